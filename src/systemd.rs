//! Running under systemd: readiness notification, and a binary upgrade started by the service
//! itself.
//!
//! With `Type=notify`, the process tells systemd when it serves (`READY=1`) and which process is
//! the service's main one (`MAINPID=`), through the datagram socket in `$NOTIFY_SOCKET` (no
//! library: one `sendto`). Without that variable, nothing is sent.
//!
//! SIGUSR1 upgrades in place: the running process starts the binary at the path it was started
//! from (by then the new one) with its own arguments and `--upgrade`, then hands its listening
//! sockets over as SIGQUIT would (Pingora's upgrade). The new process is started by the service,
//! so it is in the service's control group, and it names itself the main process once it serves
//! (`NotifyAccess=all` in the unit); the old one drains and exits. A start that fails is logged and
//! the running process goes on serving.

use std::ffi::OsString;
use std::process::{Command, Stdio};

/// Sends `state` (`READY=1`, `STOPPING=1`, …) to systemd; false when not under systemd or the
/// send failed.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return false;
    };
    let bytes = path.as_encoded_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        None => socket.send_to(state.as_bytes(), &path),
    };
    sent.is_ok()
}

/// "This process serves, and is the service's main process" (after an upgrade, the new one).
pub fn notify_ready() {
    if notify(&format!("READY=1\nMAINPID={}", std::process::id())) {
        tracing::info!("told systemd the gateway is ready");
    }
}

/// Starts the new binary to take the listeners over: the path and arguments this process was
/// started with, plus `--upgrade` (once). Its output goes where ours goes.
pub fn start_successor() -> std::io::Result<u32> {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| OsString::from("tollgate"));
    let mut rest: Vec<OsString> = args.collect();
    if !rest.iter().any(|a| a == "--upgrade") {
        rest.push("--upgrade".into());
    }
    let child = Command::new(&program)
        .args(&rest)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(child.id())
}
