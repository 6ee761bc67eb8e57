//! A private PostgreSQL server for tests (scripts/pg.sh): its own data directory, a free
//! loopback port, trust auth; stopped hard when dropped, also when the test panics.
//! PostgreSQL must be installed (`scripts/deps.sh` installs it): without it the test fails
//! saying so, it never skips.

/// A private PostgreSQL server, stopped (hard) when dropped, also when the test panics.
pub struct Pg {
    dir: tempfile::TempDir,
    pub port: u16,
}

fn pg_sh(args: &[&str]) -> Result<(), String> {
    super::run_script("scripts/pg.sh", args)
}

impl Pg {
    pub fn start() -> Pg {
        let dir = tempfile::Builder::new().prefix("tollgate-pg-").tempdir().unwrap();
        let port = super::free_port();
        let pg = Pg { dir, port };
        if let Err(e) = pg_sh(&["start", pg.dir_str(), &port.to_string()]) {
            panic!("{e}\n(is PostgreSQL installed? run scripts/deps.sh)");
        }
        pg
    }

    /// A server that takes TLS connections only, with a certificate `ca` signed for the name
    /// `localhost` only (so connecting to 127.0.0.1 is a name mismatch).
    pub fn start_tls(ca: &super::pki::Ca) -> Pg {
        let dir = tempfile::Builder::new().prefix("tollgate-pg-").tempdir().unwrap();
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        let issued = ca.issue_for(&tls, "server", &["localhost"]);
        assert!(issued.cert.ends_with("server.crt"));
        let port = super::free_port();
        let pg = Pg { dir, port };
        if let Err(e) = pg_sh(&["start", pg.dir_str(), &port.to_string()]) {
            panic!("{e}\n(is PostgreSQL installed? run scripts/deps.sh)");
        }
        pg
    }

    pub fn dir_str(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    pub fn stop(&self, mode: &str) {
        pg_sh(&["stop", self.dir_str(), mode]).unwrap();
    }

    pub fn restart(&self) {
        pg_sh(&["start", self.dir_str(), &self.port.to_string()]).unwrap();
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The test's own connection (a plain test thread: no tokio runtime here).
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = pg_sh(&["stop", self.dir_str(), "immediate"]);
    }
}
