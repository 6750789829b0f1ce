//! A real browser for the tests: Debian's chromium, headless, driven through puppeteer-core by
//! `tests/browser/driver.mjs` (one JSON command per line). `dev/test.sh` installs chromium and
//! the driver's npm packages; the test asserts on what the driver reports.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Where the driver and its node_modules live.
pub fn driver_dir() -> PathBuf {
    super::repo_root().join("tests/browser")
}

impl Browser {
    pub fn start() -> Browser {
        let dir = driver_dir();
        assert!(
            dir.join("node_modules/puppeteer-core").is_dir(),
            "puppeteer-core is not installed: run `npm ci --prefix tests/browser` (dev/test.sh does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("driver.mjs"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node tests/browser/driver.mjs");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Browser {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command; panics with the driver's error when it fails.
    pub fn call(&mut self, cmd: Value) -> Value {
        match self.try_call(cmd.clone()) {
            Ok(v) => v,
            Err(e) => panic!("browser command {cmd} failed: {e}"),
        }
    }

    pub fn try_call(&mut self, cmd: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{cmd}").expect("write to the driver");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read from the driver");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the driver said {line:?} ({e})"));
        if answer["ok"] == true {
            Ok(answer["value"].clone())
        } else {
            Err(answer["error"].as_str().unwrap_or("?").to_string())
        }
    }

    pub fn open(&mut self, url: &str) -> Value {
        self.call(json!({"cmd": "open", "url": url}))
    }

    /// Runs an async function body in the page and returns its result.
    pub fn eval(&mut self, js: &str) -> Value {
        self.call(json!({"cmd": "eval", "js": js}))
    }

    /// Waits until `expr` holds in the page (checked on each DOM change); the wait in ms.
    /// On a timeout it panics with the page's text, and leaves a screenshot beside the test's.
    pub fn wait(&mut self, expr: &str, timeout_ms: u64) -> f64 {
        match self.try_call(json!({"cmd": "wait", "js": expr, "timeout": timeout_ms})) {
            Ok(v) => v["elapsedMs"].as_f64().unwrap_or_default(),
            Err(e) => {
                let shot = super::repo_root().join("target/page-test/timed-out.png");
                let _ = self.try_call(json!({"cmd": "screenshot", "path": shot}));
                let text =
                    self.try_call(json!({"cmd": "eval", "js": "return document.body.innerText"}));
                panic!(
                    "waited in vain for {expr}: {e}\n(screenshot: {})\npage:\n{}",
                    shot.display(),
                    text.unwrap_or_default().as_str().unwrap_or("")
                );
            }
        }
    }

    pub fn click(&mut self, selector: &str) {
        self.call(json!({"cmd": "click", "selector": selector}));
    }

    pub fn screenshot(&mut self, path: &std::path::Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        self.call(json!({"cmd": "screenshot", "path": path}));
    }

    /// Dialogs (alert, confirm) and uncaught script errors the page produced.
    pub fn dialogs(&mut self) -> Value {
        self.call(json!({"cmd": "dialogs"}))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "close"}));
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.wait();
        }
    }
}
