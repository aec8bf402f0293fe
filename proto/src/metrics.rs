//! Prometheus' text format, as the coordinator's and the agent's `/metrics` write it: a family's
//! `# HELP` and `# TYPE` lines, then its samples.

use std::fmt::Write as _;

/// One metric family: its name, help, type and samples.
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<String>,
}

impl Family {
    /// `kind`: gauge, counter, ...
    pub fn new(name: &'static str, help: &'static str, kind: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds `name{labels} value` (no braces without labels). Label values must need no escaping
    /// (Muster's names are validated before they are stored).
    pub fn sample(&mut self, labels: &str, value: impl std::fmt::Display) {
        let name = self.name;
        self.samples.push(if labels.is_empty() {
            format!("{name} {value}")
        } else {
            format!("{name}{{{labels}}} {value}")
        });
    }

    /// Appends the family to `text`.
    pub fn write(&self, text: &mut String) {
        let _ = writeln!(text, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(text, "# TYPE {} {}", self.name, self.kind);
        for sample in &self.samples {
            let _ = writeln!(text, "{sample}");
        }
    }
}
