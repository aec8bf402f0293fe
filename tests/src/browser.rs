//! A real headless Chromium driven as a person would use it: it loads a page, a script types into
//! its form and presses its button, and the test reads what the page shows. Chromium's DevTools
//! protocol is spoken over `--remote-debugging-pipe` (file descriptors 3 and 4, JSON messages
//! ended by a NUL byte), so no port is opened and no client library is needed.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// How long one DevTools command may take.
const COMMAND_PATIENCE: Duration = Duration::from_secs(60);

/// A headless Chromium with one page, on a test host.
pub struct Browser {
    child: Child,
    commands: std::fs::File,
    answers: std::sync::mpsc::Receiver<serde_json::Value>,
    session: String,
    next_id: u64,
    /// The browser's profile: its history, sessions and caches.
    pub profile: PathBuf,
}

impl Browser {
    /// Starts Chromium on `host` with its profile in `profile` and opens `url` (returns once the
    /// page has loaded); `pin` is the base64 SHA-256 of the only server key it accepts besides
    /// the system's CAs.
    pub fn open(host: &crate::netns::Host, profile: &Path, pin: &str, url: &str) -> Browser {
        use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("a pipe");
        let (to_browser_read, to_browser_write) = pipe();
        let (from_browser_read, from_browser_write) = pipe();
        // The browser's ends are inherited and moved to 3 and 4 by bash (dash takes one digit
        // only), so neither may be 3 or 4 itself; ours are not inherited.
        let mut held = Vec::new();
        let mut away_from_3_and_4 = |end: OwnedFd| {
            let mut end = end;
            while [3, 4].contains(&end.as_raw_fd()) {
                let copy = end.try_clone().expect("a copy of a pipe end");
                held.push(end);
                end = copy;
            }
            fcntl(&end, FcntlArg::F_SETFD(FdFlag::empty())).expect("an inheritable pipe");
            end
        };
        let to_browser_read = away_from_3_and_4(to_browser_read);
        let from_browser_write = away_from_3_and_4(from_browser_write);
        let (read_fd, write_fd) = (to_browser_read.as_raw_fd(), from_browser_write.as_raw_fd());
        let mut command = host.command(Path::new("bash"));
        command
            .arg("-c")
            .arg(format!(
                "exec \"$0\" \"$@\" 3<&{read_fd} 4>&{write_fd} {read_fd}<&- {write_fd}>&-"
            ))
            .arg("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1400,1100",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--ignore-certificate-errors-spki-list={pin}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("chromium (.ci/setup installs it)");
        drop(to_browser_read);
        drop(from_browser_write);
        drop(held);
        let answers = read_messages(from_browser_read);
        let mut browser = Browser {
            child,
            commands: std::fs::File::from(to_browser_write),
            answers,
            session: String::new(),
            next_id: 0,
            profile: profile.to_owned(),
        };
        let targets = browser.send("Target.getTargets", &serde_json::json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|targets| targets.iter().find(|target| target["type"] == "page"))
            .unwrap_or_else(|| panic!("no page among {targets}"))["targetId"]
            .clone();
        let attached = browser.send(
            "Target.attachToTarget",
            &serde_json::json!({"targetId": page, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.send("Page.enable", &serde_json::json!({}));
        browser.send("Page.navigate", &serde_json::json!({"url": url}));
        browser.next_event("Page.loadEventFired");
        browser
    }

    /// Waits for the page's next event `method`.
    fn next_event(&mut self, method: &str) {
        let deadline = Instant::now() + COMMAND_PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {method} from chromium"));
            if message["method"] == method {
                return;
            }
        }
    }

    /// Sends one command (to the page once attached) and returns its result.
    fn send(&mut self, method: &str, params: &serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = serde_json::json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = self.session.clone().into();
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .expect("a command to chromium");
        let deadline = Instant::now() + COMMAND_PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    pub fn evaluate(&mut self, expression: &str) -> serde_json::Value {
        let result = self.send("Runtime.evaluate", &serde_json::json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits (at most `patience`) until `expression` is true in the page: the page itself waits
    /// for it (a promise that checks every 100 ms), so nothing here sleeps.
    pub fn wait_until(&mut self, what: &str, expression: &str, patience: Duration) {
        let waited = self.evaluate(&format!(
            "new Promise((resolve) => {{ const end = Date.now() + {}; \
             const look = () => {{ if ({expression}) resolve(true); \
             else if (Date.now() > end) resolve(false); else setTimeout(look, 100); }}; look(); }})",
            patience.as_millis()
        ));
        assert_eq!(
            waited,
            serde_json::Value::Bool(true),
            "{what}: not so after {patience:?}; the page shows:\n{}",
            self.evaluate("document.body.innerText")
        );
    }

    /// Writes what the page looks like to `path` (PNG).
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.send(
            "Page.captureScreenshot",
            &serde_json::json!({"format": "png"}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Closes the browser as a person would (it writes its history and sessions out) and waits
    /// for it to end.
    pub fn close(mut self) {
        self.session.clear();
        let _ = self.send("Browser.close", &serde_json::json!({}));
        // It ends once it has written its profile; `send` waited for the command's answer.
        let _ = self.child.wait();
    }

    /// Every file of the profile that holds `needle`.
    pub fn profile_files_with(profile: &Path, needle: &[u8]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir(profile) else {
            return found;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                found.extend(Browser::profile_files_with(&path, needle));
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
            {
                found.push(path);
            }
        }
        found
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads Chromium's messages (JSON, each ended by a NUL byte) on a thread of their own.
fn read_messages(from_browser: OwnedFd) -> std::sync::mpsc::Receiver<serde_json::Value> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(std::fs::File::from(from_browser));
        let mut message = Vec::new();
        while reader
            .read_until(0, &mut message)
            .is_ok_and(|read| read > 0)
        {
            message.pop();
            if let Ok(value) = serde_json::from_slice(&message)
                && sender.send(value).is_err()
            {
                return;
            }
            message.clear();
        }
    });
    receiver
}
