//! `hookhost new --lang rust|python|js NAME`: a starter plugin in a hookhost
//! checkout, two commands (build, copy) away from `plugins/NAME.wasm`.
//!
//! Where it writes, and why there:
//! - the checkout's root is the nearest folder, from the current one up,
//!   with `wit/plugin.wit` and `sdk/` (or `--root`): the SDKs, the build
//!   script and the contract live there, and the starters refer to them by
//!   relative paths;
//! - Rust: `plugins/NAME/` (`Cargo.toml`, `src/lib.rs`), added to the
//!   `members` of the `plugins/` workspace, so it shares the workspace's
//!   `hookhost-sdk` dependency, release profile and target dir, and builds
//!   with `cargo build -p NAME`;
//! - Python: `plugins/NAME-py/app.py`; JavaScript: `plugins/NAME-js/plugin.js`:
//!   `plugins/build-interpreted.sh` builds folders with these suffixes and
//!   names a component after its folder, so the copy step names it NAME.
//!
//! It never overwrites: a name the plugins folder would refuse, an existing
//! folder or no checkout is [`Refused`] (exit 2) before anything is
//! written, and a failure while writing removes the folder it created. The
//! starters are the files in `templates/`, with `{{name}}` (the plugin's
//! name), `{{type}}` (its handler type's) and `{{crate}}` (the Rust
//! component's file stem) filled in.

use crate::runtime::valid_plugin_name;
use anyhow::Context as _;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `new` writes.
#[derive(Debug, Clone, clap::Args)]
pub struct NewArgs {
    /// The language to write the plugin in.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// The plugin's name, which is its file's name in the plugins folder
    /// (NAME.wasm): 1-64 of a-z, 0-9, - and _.
    pub name: String,
    /// The hookhost checkout to write into (default: the nearest folder
    /// with wit/plugin.wit and sdk/, from the current one up).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// The languages with an SDK in the checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate in the plugins/ workspace, on sdk/rust.
    Rust,
    /// An app.py for componentize-py, on sdk/python.
    #[value(alias = "py")]
    Python,
    /// A plugin.js for jco componentize, on sdk/js.
    #[value(alias = "javascript")]
    Js,
}

/// Why `new` wrote nothing: what the command line asked for cannot be done
/// as asked. The CLI exits 2 for it, as for a usage error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// One file of a starter: its path in the plugin's folder and its text.
struct Template {
    path: &'static str,
    text: &'static str,
}

const RUST: &[Template] = &[
    Template {
        path: "Cargo.toml",
        text: include_str!("templates/rust/Cargo.toml.tmpl"),
    },
    Template {
        path: "src/lib.rs",
        text: include_str!("templates/rust/lib.rs.tmpl"),
    },
];

const PYTHON: &[Template] = &[Template {
    path: "app.py",
    text: include_str!("templates/python/app.py.tmpl"),
}];

const JS: &[Template] = &[Template {
    path: "plugin.js",
    text: include_str!("templates/js/plugin.js.tmpl"),
}];

impl Lang {
    fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }

    fn templates(self) -> &'static [Template] {
        match self {
            Lang::Rust => RUST,
            Lang::Python => PYTHON,
            Lang::Js => JS,
        }
    }

    /// The plugin's folder in `plugins/`: the build script knows Python
    /// and JavaScript plugins by these suffixes.
    fn folder(self, name: &str) -> String {
        match self {
            Lang::Rust => name.to_owned(),
            Lang::Python => format!("{name}-py"),
            Lang::Js => format!("{name}-js"),
        }
    }

    /// The commands, run from the checkout's root, that build the starter
    /// and copy it into the plugins folder as `NAME.wasm`.
    fn next_steps(self, name: &str) -> [String; 2] {
        match self {
            Lang::Rust => [
                format!(
                    "cargo build --release --target wasm32-wasip2 \
                     --manifest-path plugins/Cargo.toml -p {name}"
                ),
                format!(
                    "cp plugins/target/wasm32-wasip2/release/{}.wasm plugins/{name}.wasm",
                    crate_file_stem(name)
                ),
            ],
            Lang::Python | Lang::Js => {
                let folder = self.folder(name);
                [
                    format!("plugins/build-interpreted.sh plugins/target/interpreted {folder}"),
                    format!("cp plugins/target/interpreted/{folder}.wasm plugins/{name}.wasm"),
                ]
            }
        }
    }
}

/// `new`: write the starter, print what was written and what to run next.
pub fn run(args: &NewArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (lang, name) = (args.lang, args.name.as_str());
    check_name(lang, name)?;
    let root = match &args.root {
        Some(dir) if is_checkout(dir) => dir.clone(),
        Some(dir) => {
            return Err(Refused(format!(
                "{} is not a hookhost checkout (it has no wit/plugin.wit and sdk/)",
                dir.display()
            ))
            .into())
        }
        None => {
            let cwd = std::env::current_dir().context("reading the current directory")?;
            find_root(&cwd).ok_or_else(|| {
                Refused(format!(
                    "no hookhost checkout (a folder with wit/plugin.wit and sdk/) in {} or \
                     above it: run this inside a clone of hookhost, or pass --root",
                    cwd.display()
                ))
            })?
        }
    };
    let plugins = root.join("plugins");
    if !plugins.is_dir() {
        return Err(Refused(format!("{} has no plugins/ folder", root.display())).into());
    }
    let folder = lang.folder(name);
    let dest = plugins.join(&folder);
    if dest.symlink_metadata().is_ok() {
        return Err(already_exists(&folder).into());
    }
    if lang == Lang::Rust {
        refuse_same_output(&plugins, name)?;
    }
    // Rust: the workspace manifest with the new member, worked out (and
    // checked) before anything is written.
    let manifest = match lang {
        Lang::Rust => {
            let path = plugins.join("Cargo.toml");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the plugins workspace {}", path.display()))?;
            let edited = add_member(&text, name).map_err(|why| {
                anyhow::anyhow!(
                    "cannot add {name:?} to the members of {}: {why}; nothing was written",
                    path.display()
                )
            })?;
            edited.map(|text| (path, text))
        }
        Lang::Python | Lang::Js => None,
    };

    write_starter(lang, name, &dest, manifest.as_ref())?;

    writeln!(
        out,
        "created plugins/{folder}/, a {} plugin, in {}:",
        lang.title(),
        root.display()
    )?;
    for t in lang.templates() {
        writeln!(out, "  plugins/{folder}/{}", t.path)?;
    }
    if manifest.is_some() {
        writeln!(
            out,
            "  plugins/Cargo.toml: {name:?} added to the workspace members"
        )?;
    }
    writeln!(
        out,
        "next, from {}: build it and copy it into the plugins folder",
        root.display()
    )?;
    for step in lang.next_steps(name) {
        writeln!(out, "  {step}")?;
    }
    writeln!(
        out,
        "then `hookhost check plugins/{name}.wasm` checks it; a `hookhost serve` started there \
         loads it, and one running picks it up by itself"
    )?;
    Ok(())
}

/// The rule of the plugins folder (the name becomes `NAME.wasm`), and for
/// Rust what cargo and the build script need of a crate's name.
fn check_name(lang: Lang, name: &str) -> Result<(), Refused> {
    if !valid_plugin_name(name) {
        return Err(Refused(format!(
            "{name:?} is not a plugin name: a plugin name is 1-64 of a-z, 0-9, - and _ \
             (it becomes NAME.wasm)"
        )));
    }
    if lang == Lang::Rust {
        if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
            return Err(Refused(format!(
                "{name:?} cannot name a Rust plugin: cargo wants package names that start \
                 with a letter or _"
            )));
        }
        if crate_file_stem(name) == "hookhost_sdk" {
            return Err(Refused(format!(
                "{name:?} cannot name a Rust plugin: it is the SDK's crate name"
            )));
        }
        if name.ends_with("-py") || name.ends_with("-js") {
            return Err(Refused(format!(
                "{name:?} cannot name a Rust plugin: folders in plugins/ ending in -py or -js \
                 are Python and JavaScript plugins"
            )));
        }
    }
    Ok(())
}

/// Cargo names a crate's component after it with `-` read as `_`, so
/// `foo_bar` next to `foo-bar` would overwrite `foo_bar.wasm` (cargo only
/// warns): refuse a Rust name whose output an existing crate already has.
fn refuse_same_output(plugins: &Path, name: &str) -> Result<(), Refused> {
    let stem = crate_file_stem(name);
    let entries = std::fs::read_dir(plugins)
        .map_err(|e| Refused(format!("reading {}: {e}", plugins.display())))?;
    for entry in entries.flatten() {
        let other = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join("Cargo.toml").is_file() && crate_file_stem(&other) == stem {
            return Err(Refused(format!(
                "{name:?} cannot name a Rust plugin: plugins/{other} already builds {stem}.wasm"
            )));
        }
    }
    Ok(())
}

fn already_exists(folder: &str) -> Refused {
    Refused(format!(
        "plugins/{folder} already exists: `hookhost new` never overwrites; choose another \
         name or move it away"
    ))
}

/// A hookhost checkout: the contract and the SDKs are there.
fn is_checkout(dir: &Path) -> bool {
    dir.join("wit").join("plugin.wit").is_file() && dir.join("sdk").is_dir()
}

/// The nearest checkout from `start` up.
fn find_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| is_checkout(d))
        .map(Path::to_path_buf)
}

/// The Rust component's file stem: cargo names a library's output after
/// the crate, with `-` as `_`.
fn crate_file_stem(name: &str) -> String {
    name.replace('-', "_")
}

/// The handler's type name: the name in CamelCase with `Plugin`, always an
/// identifier (in Rust and Python) that no name the starters import can
/// clash with, whatever the name.
fn type_name(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if camel.starts_with(|c: char| c.is_ascii_alphabetic()) {
        format!("{camel}Plugin")
    } else {
        format!("Plugin{camel}")
    }
}

/// A template with the plugin's names filled in.
fn fill(template: &str, name: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{type}}", &type_name(name))
        .replace("{{crate}}", &crate_file_stem(name))
}

/// Create `dest` and the starter's files in it, then replace the workspace
/// manifest (if any) in one rename. On any failure, `dest` (which this
/// call created, so holds nothing else) is removed again.
fn write_starter(
    lang: Lang,
    name: &str,
    dest: &Path,
    manifest: Option<&(PathBuf, String)>,
) -> anyhow::Result<()> {
    match std::fs::create_dir(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let folder = dest.file_name().map(|f| f.to_string_lossy().into_owned());
            return Err(already_exists(&folder.unwrap_or_default()).into());
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", dest.display())),
    }
    let written = (|| -> anyhow::Result<()> {
        for t in lang.templates() {
            let path = dest.join(t.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(fill(t.text, name).as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some((path, text)) = manifest {
            // A temporary file next to it, renamed over it: the manifest is
            // the old one or the new one, never half of either. With the
            // old one's permissions, not the temporary file's 0600.
            let dir = path.parent().unwrap_or(Path::new("."));
            let permissions = std::fs::metadata(path)
                .with_context(|| format!("reading {}", path.display()))?
                .permissions();
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
            tmp.as_file()
                .set_permissions(permissions)
                .with_context(|| format!("setting the permissions of {}", tmp.path().display()))?;
            tmp.write_all(text.as_bytes())
                .with_context(|| format!("writing a new {}", path.display()))?;
            tmp.persist(path)
                .with_context(|| format!("replacing {}", path.display()))?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    written
}

/// The `members` of a workspace manifest, with where each is in the text.
type Members = toml::Spanned<Vec<toml::Spanned<String>>>;

fn members(manifest: &str) -> Result<Members, String> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        workspace: Option<Workspace>,
    }
    #[derive(serde::Deserialize)]
    struct Workspace {
        members: Option<Members>,
    }
    let m: Manifest = toml::from_str(manifest).map_err(|e| format!("it does not parse: {e}"))?;
    m.workspace
        .ok_or("it has no [workspace]")?
        .members
        .ok_or_else(|| "its [workspace] has no members list".to_owned())
}

/// `manifest` with `name` appended to `[workspace] members`, written the
/// way the list already is (one per line or all on one), comments and
/// everything else kept byte for byte; `None` if it is a member already.
/// The result is parsed again and must list exactly the old members and
/// `name`, or it is an error.
fn add_member(manifest: &str, name: &str) -> Result<Option<String>, String> {
    let before = members(manifest)?;
    if before.get_ref().iter().any(|m| m.get_ref() == name) {
        return Ok(None);
    }
    let array = before.span();
    // Plugin names need no escaping in a TOML string.
    let entry = format!("\"{name}\"");
    let (at, insert) = match before.get_ref().last() {
        None => (array.start + 1, entry),
        Some(last) => {
            let end = last.span().end;
            let rest = manifest.get(end..array.end).ok_or("bad span")?;
            let comma = rest
                .trim_start()
                .starts_with(',')
                .then(|| rest.find(','))
                .flatten()
                .map(|i| end + i);
            let line_start = manifest[..last.span().start]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let line = &manifest[line_start..last.span().start];
            let indent = &line[..line.len() - line.trim_start().len()];
            let multiline = manifest[array.clone()].contains('\n');
            // After the last member's line (its comment stays with it),
            // unless the list closes on that line.
            let next_line = comma.and_then(|c| {
                let newline = manifest.get(c..array.end)?.find('\n')?;
                Some(c + newline + 1)
            });
            match (multiline, comma) {
                (true, Some(c)) => match next_line {
                    Some(at) => (at, format!("{indent}{entry},\n")),
                    None => (c + 1, format!("\n{indent}{entry},")),
                },
                (true, None) => (end, format!(",\n{indent}{entry}")),
                (false, Some(c)) => (c + 1, format!(" {entry},")),
                (false, None) => (end, format!(", {entry}")),
            }
        }
    };
    let mut edited = manifest.to_owned();
    edited.insert_str(at, &insert);
    let after: Vec<String> = members(&edited)?
        .into_inner()
        .into_iter()
        .map(toml::Spanned::into_inner)
        .collect();
    let mut expected: Vec<String> = before
        .into_inner()
        .into_iter()
        .map(toml::Spanned::into_inner)
        .collect();
    expected.push(name.to_owned());
    if after != expected {
        return Err("its members list is written in a way this command cannot edit".into());
    }
    Ok(Some(edited))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_added_the_way_the_list_is_written() {
        let cases = [
            // plugins/Cargo.toml's own style: one per line, trailing comma.
            (
                "[workspace]\nmembers = [\n    \"echo\",\n    \"noop\", # the fixture\n]\n\n[profile.release]\nlto = true\n",
                "[workspace]\nmembers = [\n    \"echo\",\n    \"noop\", # the fixture\n    \"new-one\",\n]\n\n[profile.release]\nlto = true\n",
            ),
            (
                "[workspace]\nmembers = [\n  \"echo\"\n]\n",
                "[workspace]\nmembers = [\n  \"echo\",\n  \"new-one\"\n]\n",
            ),
            (
                "[workspace]\nmembers = [\n  \"echo\", \"noop\", ]\n",
                "[workspace]\nmembers = [\n  \"echo\", \"noop\",\n  \"new-one\", ]\n",
            ),
            (
                "[workspace]\nmembers = [\"echo\", \"noop\"]\n",
                "[workspace]\nmembers = [\"echo\", \"noop\", \"new-one\"]\n",
            ),
            (
                "[workspace]\nmembers = [\"echo\",]\n",
                "[workspace]\nmembers = [\"echo\", \"new-one\",]\n",
            ),
            (
                "[workspace]\nmembers = []\n",
                "[workspace]\nmembers = [\"new-one\"]\n",
            ),
            (
                "[workspace.package]\nedition = \"2021\"\n\n[workspace]\nmembers = ['echo']\n",
                "[workspace.package]\nedition = \"2021\"\n\n[workspace]\nmembers = ['echo', \"new-one\"]\n",
            ),
        ];
        for (before, after) in cases {
            assert_eq!(
                add_member(before, "new-one"),
                Ok(Some(after.to_owned())),
                "{before}"
            );
        }
    }

    #[test]
    fn a_member_already_listed_is_left_alone_and_odd_manifests_are_errors() {
        assert_eq!(
            add_member("[workspace]\nmembers = [\"echo\"]\n", "echo"),
            Ok(None)
        );
        for bad in [
            "[package]\nname = \"x\"\n",
            "[workspace]\nresolver = \"2\"\n",
            "[workspace\n",
        ] {
            assert!(add_member(bad, "echo").is_err(), "{bad}");
        }
    }

    #[test]
    fn type_names_are_identifiers_whatever_the_name() {
        for (name, ty) in [
            ("hello", "HelloPlugin"),
            ("my-hook_2", "MyHook2Plugin"),
            ("self", "SelfPlugin"),
            ("none", "NonePlugin"),
            ("1st-try", "Plugin1stTry"),
            ("_", "Plugin"),
            ("-", "Plugin"),
        ] {
            assert_eq!(type_name(name), ty, "{name}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for t in [RUST, PYTHON, JS].into_iter().flatten() {
            let text = fill(t.text, "my-plugin");
            assert!(!text.contains("{{"), "{}: {text}", t.path);
            assert!(text.contains("my-plugin"), "{}", t.path);
        }
    }

    #[test]
    fn a_rust_name_whose_component_another_crate_builds_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let crate_dir = dir.path().join("github-issues");
        std::fs::create_dir_all(&crate_dir).expect("mkdir");
        std::fs::write(crate_dir.join("Cargo.toml"), "").expect("write");
        let e = refuse_same_output(dir.path(), "github_issues").expect_err("same output");
        assert!(e.0.contains("github_issues.wasm"), "{}", e.0);
        assert!(refuse_same_output(dir.path(), "github-issues-2").is_ok());
    }

    #[test]
    fn names_are_refused_by_the_plugins_folder_rule_and_for_rust_by_cargo_s() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for bad in ["", "Hello", "a b", "a/b", "..", &"x".repeat(65)] {
                assert!(check_name(lang, bad).is_err(), "{lang:?} {bad:?}");
            }
            assert!(check_name(lang, "my-plugin_2").is_ok(), "{lang:?}");
        }
        for rust_only in ["1st", "-x", "hello-py", "hello-js", "hookhost-sdk"] {
            assert!(check_name(Lang::Rust, rust_only).is_err(), "{rust_only}");
            assert!(check_name(Lang::Python, rust_only).is_ok(), "{rust_only}");
        }
    }

    #[test]
    fn the_root_is_the_nearest_folder_with_the_contract_and_the_sdks() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("checkout");
        let deep = root.join("plugins").join("x");
        std::fs::create_dir_all(&deep).expect("mkdir");
        std::fs::create_dir_all(root.join("sdk")).expect("mkdir");
        assert_eq!(find_root(&deep), None, "no wit/ yet");
        std::fs::create_dir_all(root.join("wit")).expect("mkdir");
        std::fs::write(root.join("wit").join("plugin.wit"), "").expect("write");
        assert_eq!(find_root(&deep), Some(root.clone()));
        assert_eq!(find_root(&root), Some(root));
    }
}
