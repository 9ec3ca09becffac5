//! `sandbox-probe`: a test fixture that tries what a plugin must not be able
//! to do (list the file system root, read a host file, see environment
//! variables, open a socket) and logs what happened, so hookhost's tests
//! prove plugins run with no ambient authority.

use hookhost_sdk::{export, log, Error, Event, Handler, Info};

struct SandboxProbe;

fn outcome<T, E>(r: Result<T, E>) -> &'static str {
    if r.is_ok() {
        "allowed"
    } else {
        "denied"
    }
}

impl Handler for SandboxProbe {
    fn describe() -> Info {
        Info::new("sandbox-probe", env!("CARGO_PKG_VERSION")).subscribe("*")
    }

    fn handle(_event: Event) -> Result<(), Error> {
        let root = outcome(std::fs::read_dir("/"));
        let file = outcome(std::fs::read("/etc/passwd"));
        let cwd = outcome(std::fs::read_dir("."));
        let env = std::env::vars().count().to_string();
        let tcp = outcome(std::net::TcpStream::connect("127.0.0.1:9"));
        let udp = outcome(std::net::UdpSocket::bind("127.0.0.1:0"));
        log::info(
            "probe",
            &[
                ("fs_root", root),
                ("fs_file", file),
                ("fs_cwd", cwd),
                ("env_vars", &env),
                ("tcp", tcp),
                ("udp", udp),
            ],
        );
        Ok(())
    }
}

export!(SandboxProbe);
