#!/usr/bin/env bash
# Build every Python and JavaScript plugin into a WebAssembly component.
#
#   plugins/build-interpreted.sh OUT_DIR [NAME ...]
#
# plugins/NAME-py/app.py     (defines `Handler = hookhost.export(...)`)  -> OUT_DIR/NAME-py.wasm
# plugins/NAME-js/plugin.js  (or plugin.ts; exports `handler`)          -> OUT_DIR/NAME-js.wasm
#
# With NAMEs (folder names, e.g. echo-py), only those are built.
#
# The pinned tools are installed on first use into the repository, never
# globally: a Python venv at .tools/py from sdk/python/requirements.txt
# (componentize-py), and `npm install` in sdk/js from its package-lock.json (jco,
# componentize-js, componentize-qjs). Once installed, builds run offline.
# A component is rebuilt only when its sources, the SDK or wit/ are newer
# than it. Builds run one at a time: each takes a core for 5-15 s.
#
# Environment:
#   HOOKHOST_JS_BACKEND  quickjs (default: componentize-qjs; ~1.8 MB, ~0.6 ms and
#                        ~0.3 M fuel per fresh call) or starlingmonkey
#                        (componentize-js; ~12.6 MB, ~2.5 ms and ~7 M fuel per
#                        call, compiles ~5x slower in the host, but a fuller
#                        web API: TextDecoder, URL, ...)
#   HOOKHOST_FORCE=1     rebuild even when up to date
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 OUT_DIR [PLUGIN_FOLDER_NAME ...]" >&2
    exit 2
fi
out_dir=$1
shift
only=("$@")

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"
js_sdk="$root/sdk/js"
py_sdk="$root/sdk/python"
backend=${HOOKHOST_JS_BACKEND:-quickjs}
mkdir -p "$out_dir" "$tools"
out_dir=$(cd "$out_dir" && pwd)

log() { echo "build-interpreted: $*" >&2; }

# One installer at a time (tests and CI may call this concurrently).
exec 9>"$tools/.lock"
flock 9

wanted() {
    [[ ${#only[@]} -eq 0 ]] && return 0
    local n
    for n in "${only[@]}"; do [[ $n == "$1" ]] && return 0; done
    return 1
}

have_py=0 have_js=0
for d in "$root"/plugins/*-py/; do [[ -d $d ]] && wanted "$(basename "$d")" && have_py=1; done
for d in "$root"/plugins/*-js/; do [[ -d $d ]] && wanted "$(basename "$d")" && have_js=1; done

install_python() {
    local venv="$tools/py" stamp="$tools/py/.requirements"
    if [[ -x $venv/bin/componentize-py ]] && cmp -s "$py_sdk/requirements.txt" "$stamp"; then
        return
    fi
    command -v python3 >/dev/null || { log "python3 not found (needed to install componentize-py)"; exit 1; }
    log "installing componentize-py into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$py_sdk/requirements.txt"
    cp "$py_sdk/requirements.txt" "$stamp"
}

install_js() {
    local stamp="$js_sdk/node_modules/.hookhost-lock"
    if [[ -d $js_sdk/node_modules ]] && cmp -s "$js_sdk/package-lock.json" "$stamp"; then
        return
    fi
    command -v npm >/dev/null || { log "npm not found (needed to install jco)"; exit 1; }
    log "installing jco and componentize-js (npm install in sdk/js, from its package-lock)"
    # Not `npm ci`: the registry reachable here lacks some platform-specific
    # optional packages (e.g. @rolldown/binding-darwin-arm64 at the locked
    # version), so the lock has no entries for them and `npm ci` refuses it
    # as out of sync. `npm install` installs exactly the locked tree; the
    # lock must come out unchanged.
    cp "$js_sdk/package-lock.json" "$tools/package-lock.json.committed"
    (cd "$js_sdk" && npm install --no-save --no-audit --no-fund --loglevel=error)
    if ! cmp -s "$js_sdk/package-lock.json" "$tools/package-lock.json.committed"; then
        cp "$tools/package-lock.json.committed" "$js_sdk/package-lock.json"
        log "npm changed sdk/js/package-lock.json (restored): is package.json in sync with it?"
        exit 1
    fi
    cp "$js_sdk/package-lock.json" "$stamp"
}

# Newer inputs than the output? (sources of the plugin, the SDK, the WIT)
stale() {
    local output=$1
    shift
    [[ ${HOOKHOST_FORCE:-0} == 1 || ! -f $output ]] && return 0
    [[ -n $(find "$@" -newer "$output" -type f \
        -not -path '*/node_modules/*' -not -path '*/__pycache__/*' -print -quit) ]]
}

# Write to a temporary name and rename: the server's hot reload never sees
# a half-written component.
built=0 failed=()

build_py() {
    local dir=$1 name out
    name=$(basename "$dir")
    out="$out_dir/$name.wasm"
    [[ -f $dir/app.py ]] || { log "$name: no app.py, skipped"; return; }
    stale "$out" "$dir" "$py_sdk/hookhost" "$py_sdk/requirements.txt" "$root/wit" || return 0
    log "$name (componentize-py)"
    local start=$SECONDS
    # -p order: the plugin's folder first, then the SDK. PYTHONPATH and a
    # VIRTUAL_ENV would add packages from elsewhere: clear them.
    if (cd "$dir" && env -u PYTHONPATH -u VIRTUAL_ENV "$tools/py/bin/componentize-py" --quiet \
        -d "$root/wit" -w plugin componentize -p "$dir" -p "$py_sdk" app -o "$out.tmp"); then
        mv -f "$out.tmp" "$out"
        log "$name: $(stat -c %s "$out") bytes in $((SECONDS - start)) s"
        built=$((built + 1))
    else
        rm -f "$out.tmp"
        failed+=("$name")
    fi
}

build_js() {
    local dir=$1 name out entry
    name=$(basename "$dir")
    out="$out_dir/$name.wasm"
    entry=
    for f in plugin.js plugin.ts; do [[ -f $dir/$f ]] && entry=$dir/$f && break; done
    [[ -n $entry ]] || { log "$name: no plugin.js or plugin.ts, skipped"; return; }
    # The backend is an input too: remember which one built the file.
    local made_by="$out_dir/.$name.backend"
    if [[ $(cat "$made_by" 2>/dev/null) == "$backend" ]]; then
        stale "$out" "$dir" "$js_sdk/hookhost.js" "$js_sdk/tools" "$js_sdk/package-lock.json" "$root/wit" || return 0
    fi
    log "$name (jco componentize, $backend)"
    local start=$SECONDS
    # jco strips TypeScript's types without checking them: check first.
    if [[ $entry == *.ts ]] && ! "$js_sdk/node_modules/.bin/tsc" --noEmit --strict \
        --target es2022 --module nodenext --moduleResolution nodenext "$entry" >&2; then
        failed+=("$name")
        return
    fi
    # tools/preopen.mjs: jco 1.35 + preview2-shim 0.26 cannot read files
    # without it. -d all: the host offers no wasi:http, and a plugin has no
    # stdio, random or clocks it needs from the JS runtime.
    local args=(componentize "$entry" --wit "$root/wit" -n plugin
        --bundle --bundle-config "$js_sdk/tools/bundle.config.mjs" -o "$out.tmp")
    case $backend in
        starlingmonkey) args+=(-d all) ;;
        # Sync exports: the async (component-model-async) ABI needs a wasmtime
        # feature the host does not enable ("task.cancel requires the
        # component model async feature").
        quickjs) args+=(--backend quickjs --backend-qjs-disable-async) ;;
        *) log "HOOKHOST_JS_BACKEND must be starlingmonkey or quickjs, not $backend"; exit 2 ;;
    esac
    if node --import "$js_sdk/tools/preopen.mjs" \
        "$js_sdk/node_modules/@bytecodealliance/jco/dist/jco.js" "${args[@]}" >"$out_dir/.$name.log" 2>&1 \
        && [[ -s $out.tmp ]]; then
        mv -f "$out.tmp" "$out"
        echo "$backend" >"$made_by"
        rm -f "$out_dir/.$name.log"
        log "$name: $(stat -c %s "$out") bytes in $((SECONDS - start)) s"
        built=$((built + 1))
    else
        grep -v 'Unknown user config' "$out_dir/.$name.log" >&2 || true
        rm -f "$out.tmp"
        failed+=("$name")
    fi
}

if [[ $have_py == 1 ]]; then
    install_python
    for d in "$root"/plugins/*-py/; do wanted "$(basename "$d")" && build_py "${d%/}"; done
fi
if [[ $have_js == 1 ]]; then
    install_js
    for d in "$root"/plugins/*-js/; do wanted "$(basename "$d")" && build_js "${d%/}"; done
fi

if [[ ${#failed[@]} -gt 0 ]]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "done: $built built, components in $out_dir"
