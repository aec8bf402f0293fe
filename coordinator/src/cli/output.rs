//! Output: a table for people, JSON for programs, and the values both show.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum OutputFormat {
    Table,
    Json,
    /// TOML, for `muster get` (which writes TOML by default).
    Toml,
}

pub(super) fn format_time(unix_ms: i64) -> String {
    crate::unix_ms_text(unix_ms)
}

pub(super) fn role_names(roles: &[i32]) -> Vec<String> {
    roles
        .iter()
        .map(|&role| {
            Role::try_from(role)
                .map(|role| role.cli_name().to_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// Writes one thing's fields, a `name  value` line each, for `show` commands.
pub(super) fn write_fields(
    out: &mut impl std::io::Write,
    fields: &[(&str, String)],
) -> std::io::Result<()> {
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in fields {
        writeln!(out, "{name:<width$}  {value}")?;
    }
    Ok(())
}

/// Writes rows as aligned columns under a header.
pub(super) fn write_table(
    out: &mut impl std::io::Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

pub(super) fn write_json(
    out: &mut impl std::io::Write,
    value: &impl Serialize,
) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| CliError::Output(std::io::Error::other(error)))?;
    writeln!(out, "{text}")?;
    Ok(())
}
