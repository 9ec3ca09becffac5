//! `sandbox-probe`: a test fixture that tries what a plugin must not be able
//! to do (list the file system root, read a host file, see environment
//! variables, connect to a listening port given as config `port`, bind a
//! UDP socket) and logs what happened, so hookhost's tests prove plugins run
//! with no ambient authority.

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
        // The test listens on this port: a connection succeeds unless the
        // sandbox stops it.
        let port = hookhost_sdk::config::get("port").unwrap_or_else(|| "9".into());
        let tcp = outcome(std::net::TcpStream::connect(format!("127.0.0.1:{port}")));
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
