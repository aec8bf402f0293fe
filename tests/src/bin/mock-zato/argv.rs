//! Zato's command line as mock-zato parses it (strictly, as Zato's argparse does), and the
//! invocation log with secrets masked.

use super::*;

// Strict argument parsing

pub(crate) struct Spec {
    pub(crate) command: &'static str,
    pub(crate) positionals: &'static [&'static str],
    /// Options that take a value.
    pub(crate) options: Vec<&'static str>,
    pub(crate) flags: &'static [&'static str],
}

#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) positionals: Vec<String>,
    pub(crate) options: BTreeMap<String, String>,
    pub(crate) flags: BTreeSet<String>,
}

impl Parsed {
    pub(crate) fn get(&self, option: &str) -> Option<&str> {
        self.options.get(option).map(String::as_str)
    }
    pub(crate) fn get_or<'a>(&'a self, option: &str, default: &'a str) -> &'a str {
        self.get(option).unwrap_or(default)
    }
    pub(crate) fn require(&self, option: &str, why: &str) -> Result<&str> {
        self.get(option)
            .ok_or_else(|| MockError::Usage(format!("{option} is missing; {why}")))
    }
}

pub(crate) fn parse(spec: &Spec, args: &[String]) -> Result<Parsed> {
    let mut parsed = Parsed::default();
    let mut unrecognized = Vec::new();
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        index += 1;
        if !arg.starts_with("--") {
            parsed.positionals.push(arg.clone());
            continue;
        }
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        if spec.flags.contains(&name.as_str()) {
            parsed.flags.insert(name);
        } else if spec.options.contains(&name.as_str()) {
            let value = match inline_value {
                Some(value) => value,
                // argparse takes a separate value that starts with `-` for an option.
                None if index < args.len() && !args[index].starts_with('-') => {
                    index += 1;
                    args[index - 1].clone()
                }
                None => {
                    return Err(MockError::Usage(format!(
                        "zato {}: error: argument {name}: expected one argument",
                        spec.command
                    )));
                }
            };
            parsed.options.insert(name, value);
        } else {
            unrecognized.push(arg.clone());
        }
    }
    if parsed.positionals.len() > spec.positionals.len() {
        unrecognized.extend(parsed.positionals.drain(spec.positionals.len()..));
    }
    if !unrecognized.is_empty() {
        return Err(MockError::Usage(format!(
            "zato {}: error: unrecognized arguments: {}",
            spec.command,
            unrecognized.join(" ")
        )));
    }
    if parsed.positionals.len() < spec.positionals.len() {
        let missing = &spec.positionals[parsed.positionals.len()..];
        return Err(MockError::Usage(format!(
            "zato {}: error: the following arguments are required: {}",
            spec.command,
            missing.join(", ")
        )));
    }
    if let Some(odb_type) = parsed.get("--odb-type")
        && !["sqlite", "postgresql", "mysql"].contains(&odb_type)
    {
        return Err(MockError::Usage(format!(
            "zato {}: error: argument --odb-type: invalid choice: '{odb_type}' (choose from 'mysql', 'postgresql', 'sqlite')",
            spec.command
        )));
    }
    Ok(parsed)
}

pub(crate) fn with(base: &[&'static str], more: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(more).copied().collect()
}

/// Zato asks on the terminal for every option whose name holds `password` or `secret` that is
/// missing or empty (except `--secret-key`, and the ODB password on SQLite), unless the command
/// allows empty secrets: `create odb|server|scheduler|web-admin` do, `create cluster` and `update
/// password` do not. Without a terminal the question fails, so the mock fails as Zato would there.
pub(crate) fn require_secrets(parsed: &Parsed, secrets: &[&str]) -> Result<()> {
    let why =
        "Zato would ask for it on the terminal (and fail without one); pass it on the command line";
    let mut asked: Vec<&str> = secrets.to_vec();
    if parsed.get_or("--odb-type", "sqlite") != "sqlite" {
        asked.insert(0, "--odb-password");
    }
    for secret in asked {
        if parsed.get(secret).is_none_or(str::is_empty) {
            return Err(failed(format!("{secret} is missing or empty; {why}")));
        }
    }
    Ok(())
}

pub(crate) fn masked(args: &[String]) -> String {
    let mut shown = Vec::new();
    let mut mask_next = false;
    for arg in args {
        if mask_next {
            shown.push("***".to_owned());
            mask_next = false;
            continue;
        }
        let sensitive =
            arg.starts_with("--") && (arg.contains("password") || arg.contains("secret"));
        match arg.split_once('=') {
            Some((name, _)) if sensitive => shown.push(format!("{name}=***")),
            None if sensitive => {
                shown.push(arg.clone());
                mask_next = true;
            }
            _ => shown.push(arg.clone()),
        }
    }
    shown.join(" ")
}

pub(crate) fn now_text() -> String {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", elapsed.as_secs(), elapsed.subsec_millis())
}

/// UTC now as Python's `datetime.utcnow().isoformat()`: `2026-12-06T07:34:00.123456`.
pub(crate) fn utc_iso() -> String {
    humantime::format_rfc3339_micros(SystemTime::now())
        .to_string()
        .trim_end_matches('Z')
        .to_owned()
}

pub(crate) fn append_log(path: &Path, line: &str) {
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

pub(crate) fn log_invocation(args: &[String], component_path: Option<&Path>) {
    let line = format!(
        "{} pid={} zato {}",
        now_text(),
        std::process::id(),
        masked(args)
    );
    append_log(Path::new("mock-zato.log"), &line);
    let working_dir = std::env::current_dir().ok();
    if let Some(path) = component_path
        && path.is_dir()
        && std::fs::canonicalize(path).ok() != working_dir
    {
        append_log(&path.join("mock-zato.log"), &line);
    }
}
