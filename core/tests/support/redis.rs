//! A real `redis-server` for the shared-tier tests: started on a free 127.0.0.1 port without
//! persistence, stopped by PID when dropped. `redis-cli` talks to it for what the tests check
//! from outside coatcheck.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// A TLS-only server's files.
    tls: Option<TlsFiles>,
    /// Configuration the next start adds (see `restart_with`).
    extra: Vec<String>,
}

/// A CA made for one test server, and the server's certificate (for 127.0.0.1 and
/// localhost) and key, in a directory removed with the server.
pub struct TlsFiles {
    dir: PathBuf,
}

impl TlsFiles {
    fn make(dir: PathBuf) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
        std::fs::create_dir_all(&dir).expect("make the TLS directory");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "coatcheck test CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        server
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        let server = server.signed_by(&key, &ca, &ca_key).unwrap();
        let files = TlsFiles { dir };
        std::fs::write(files.ca(), ca.pem()).unwrap();
        std::fs::write(files.dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(files.dir.join("server.key"), key.serialize_pem()).unwrap();
        files
    }

    /// The CA's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl RedisServer {
    pub fn start() -> Self {
        // The port was free when asked for, but another test may take it before the server
        // binds it: then the server exits, and another port is tried.
        for _ in 0..5 {
            let mut server = RedisServer {
                port: free_port(),
                child: None,
                tls: None,
                extra: Vec::new(),
            };
            if server.launch().is_ok() {
                return server;
            }
            // Not dropped: its socket path, named after the port, is the other server's.
            std::mem::forget(server);
        }
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            tls: None,
            extra: Vec::new(),
        };
        server.restart();
        server
    }

    /// A server that speaks only TLS on its port.
    pub fn start_tls() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("coatcheck-test-tls-{port}"));
        let mut server = RedisServer {
            port,
            child: None,
            tls: Some(TlsFiles::make(dir)),
            extra: Vec::new(),
        };
        server.restart();
        server
    }

    pub fn tls_files(&self) -> &TlsFiles {
        self.tls.as_ref().expect("a TLS server")
    }

    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The same server over its Unix socket.
    pub fn unix_url(&self) -> String {
        format!("redis+unix://{}?db=0", self.socket_path())
    }

    fn socket_path(&self) -> String {
        std::env::temp_dir()
            .join(format!("coatcheck-test-redis-{}.sock", self.port))
            .display()
            .to_string()
    }

    /// Starts the server again on the same port with `extra` added to its configuration
    /// (directives as on redis-server's command line: `--name`, then its arguments).
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|a| a.to_string()).collect();
        self.restart();
    }

    /// Starts the server (again) on the same port.
    pub fn restart(&mut self) {
        if let Err(why) = self.launch() {
            panic!("{why}; is redis-server installed? (Debian: apt-get install redis-server)");
        }
    }

    /// Starts the server and waits until it answers on its port; why not if it did not (it
    /// exited: not installed, or its port taken; or another server answers there).
    fn launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        // setpriv (util-linux) execs redis-server with a parent-death signal, so a test binary
        // killed outright leaves no server behind. The signal follows the thread that started
        // the server, which here is the test's own: it outlives the server.
        let mut command = Command::new("setpriv");
        command.args(["--pdeathsig", "KILL", "--", "redis-server"]);
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some(tls) => {
                let file = |name: &str| tls.dir.join(name).display().to_string();
                command
                    .args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .args(["--tls-cert-file", &file("server.pem")])
                    .args(["--tls-key-file", &file("server.key")])
                    .args(["--tls-ca-cert-file", &file("ca.pem")])
                    .args(["--tls-auth-clients", "no"])
            }
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args([
                "--unixsocket",
                &self.socket_path(),
                "--unixsocketperm",
                "700",
            ])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run setpriv ({e}); it is in util-linux"));
        let child = self.child.insert(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("redis-server exited ({status})"));
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        // setpriv execs redis-server, so the server's pid is the child's.
        let pid = format!("process_id:{}", child.id());
        if !self
            .cli(&["INFO", "server"])
            .lines()
            .any(|l| l.trim() == pid)
        {
            self.kill();
            return Err("another server answers on the port".into());
        }
        Ok(())
    }

    /// `kill -9` of the server.
    pub fn kill(&mut self) {
        self.signal_stop(false);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `SIGSTOP` (`stop`) or `SIGCONT` of the server: stopped, it keeps its connections and
    /// answers nothing, as a host cut off by the network would.
    pub fn signal_stop(&self, stop: bool) {
        if let Some(child) = &self.child {
            let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) on the pid of a child this struct started and has not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// Runs `redis-cli` against the server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        // Bounded: the server asked may be stopped (a test pauses it), or not this one's.
        let mut command = Command::new("timeout");
        command.args(["10", "redis-cli"]);
        if let Some(tls) = &self.tls {
            command.args(["--tls", "--cacert", &tls.ca().display().to_string()]);
        }
        let out = command
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.socket_path());
        if let Some(tls) = &self.tls {
            let _ = std::fs::remove_dir_all(&tls.dir);
        }
    }
}
