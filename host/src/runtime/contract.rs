//! Checks that a compiled component speaks this host's contract before it
//! is linked, so a plugin built for another contract version, or something
//! that is not a hookhost plugin at all, is refused with a message that
//! says which and why (rather than a linker error about a missing name).

use super::plugin::LoadError;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;
use wasmtime::Engine;

/// The WIT package plugins are built against.
pub const PACKAGE: &str = "hookhost:plugin";
/// The contract version this host implements.
pub const VERSION: &str = "0.1.0";
/// The interface a plugin must export.
const HANDLER: &str = "hookhost:plugin/handler";
/// The hookhost interfaces a plugin may import.
const IMPORTS: [&str; 4] = [
    "hookhost:plugin/log",
    "hookhost:plugin/kv",
    "hookhost:plugin/config",
    "hookhost:plugin/types",
];
/// WASI 0.2 packages linked for plugins (language runtimes need them):
/// every one of them grants nothing (no preopens, env or network).
const WASI_PACKAGES: [&str; 6] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

/// `package/interface` without its `@version`.
fn interface(name: &str) -> &str {
    name.split_once('@').map_or(name, |(n, _)| n)
}

/// What a plugin must look like, checked on its type only (nothing runs).
pub(crate) fn check(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let export = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .find(|name| interface(name) == HANDLER);
    let Some(export) = export else {
        return Err(LoadError::NotAPlugin {
            exports: ty.exports(engine).map(|(n, _)| n.to_owned()).collect(),
        });
    };
    compatible(&export)?;
    for (name, item) in ty.imports(engine) {
        let is_instance = matches!(item.ty, ComponentItem::ComponentInstance(_));
        if name.starts_with(PACKAGE) && IMPORTS.contains(&interface(name)) && is_instance {
            compatible(name)?;
        } else if name.starts_with(PACKAGE) {
            // A hookhost interface this version does not have: most likely
            // a newer contract.
            compatible(name)?;
            return Err(LoadError::UnsupportedImport(name.to_owned()));
        } else if !(is_instance && WASI_PACKAGES.iter().any(|p| name.starts_with(p))) {
            return Err(LoadError::UnsupportedImport(name.to_owned()));
        }
    }
    Ok(())
}

/// `hookhost:plugin/x@0.1.3` is compatible with 0.1.0 (semver: same 0.x
/// minor); `@0.2.0` or a name without a version is not.
fn compatible(name: &str) -> Result<(), LoadError> {
    let found = name.split_once('@').map(|(_, v)| v).unwrap_or("");
    fn same_track(v: &str) -> (Option<&str>, Option<&str>) {
        let mut it = v.split('.');
        (it.next(), it.next())
    }
    if found.is_empty() || same_track(found) != same_track(VERSION) {
        return Err(LoadError::IncompatibleContract {
            found: if found.is_empty() {
                "an unversioned contract".into()
            } else {
                format!("{PACKAGE}@{found}")
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn interfaces_are_compared_without_their_version() {
        assert_eq!(
            super::interface("hookhost:plugin/handler@0.1.0"),
            "hookhost:plugin/handler"
        );
        assert_eq!(
            super::interface("hookhost:plugin/handler-x@0.1.0"),
            "hookhost:plugin/handler-x"
        );
        assert_eq!(
            super::interface("wasi:cli/environment"),
            "wasi:cli/environment"
        );
    }

    #[test]
    fn versions_on_the_same_track_are_compatible() {
        assert!(compatible("hookhost:plugin/handler@0.1.0").is_ok());
        assert!(compatible("hookhost:plugin/handler@0.1.7").is_ok());
        assert!(compatible("hookhost:plugin/handler@0.2.0").is_err());
        assert!(compatible("hookhost:plugin/handler@1.1.0").is_err());
        assert!(compatible("hookhost:plugin/handler").is_err());
    }
}
