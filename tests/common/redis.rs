//! A private Redis server for tests (scripts/redis.sh): its own directory, a free loopback port,
//! no persistence; killed when dropped, also when the test panics. Redis must be installed
//! (`scripts/deps.sh` installs it): without it the test fails saying so, it never skips.

pub struct Redis {
    dir: tempfile::TempDir,
    pub port: u16,
}

fn redis_sh(args: &[&str]) -> Result<(), String> {
    super::run_script("scripts/redis.sh", args)
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::Builder::new().prefix("tollgate-redis-").tempdir().unwrap();
        let port = super::free_port();
        let redis = Redis { dir, port };
        if let Err(e) = redis_sh(&["start", redis.dir_str(), &port.to_string()]) {
            panic!("{e}\n(is redis-server installed? run scripts/deps.sh)");
        }
        redis
    }

    /// A server that takes TLS connections only, its certificate signed by `ca` for localhost
    /// and 127.0.0.1.
    pub fn start_tls(ca: &super::pki::Ca) -> Redis {
        let dir = tempfile::Builder::new().prefix("tollgate-redis-").tempdir().unwrap();
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        ca.issue(&tls, "server");
        std::fs::copy(&ca.pem, tls.join("ca.pem")).unwrap();
        let port = super::free_port();
        let redis = Redis { dir, port };
        if let Err(e) = redis_sh(&["start", redis.dir_str(), &port.to_string()]) {
            panic!("{e}\n(is redis-server installed? run scripts/deps.sh)");
        }
        redis
    }

    fn dir_str(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    pub fn stop(&self) {
        redis_sh(&["stop", self.dir_str(), "fast"]).unwrap();
    }

    /// A crash: SIGKILL.
    pub fn kill(&self) {
        redis_sh(&["stop", self.dir_str(), "kill"]).unwrap();
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub fn restart(&self) {
        redis_sh(&["start", self.dir_str(), &self.port.to_string()]).unwrap();
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = redis_sh(&["stop", self.dir_str(), "kill"]);
    }
}
