//! SQL written once for every dialect: queries use PostgreSQL's `$1, $2, …` placeholders, in
//! order, and MySQL takes them as `?`. The coordinator's store, the agent (Zato's ODB) and
//! mock-zato share this one rewrite.

/// `query` with each `$N` placeholder as `?`, for MySQL. The placeholders must appear in the
/// order of their numbers, as `?` binds by position.
pub fn mysql_placeholders(query: &str) -> String {
    let mut converted = String::with_capacity(query.len());
    let mut characters = query.chars().peekable();
    while let Some(character) = characters.next() {
        if character == '$' && characters.peek().is_some_and(char::is_ascii_digit) {
            while characters.peek().is_some_and(char::is_ascii_digit) {
                characters.next();
            }
            converted.push('?');
        } else {
            converted.push(character);
        }
    }
    converted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_placeholders_become_question_marks_and_nothing_else_changes() {
        assert_eq!(
            mysql_placeholders("SELECT a FROM t WHERE b = $1 AND c IN ($2, $10) AND d = '$'"),
            "SELECT a FROM t WHERE b = ? AND c IN (?, ?) AND d = '$'"
        );
        assert_eq!(mysql_placeholders("price$ and $x"), "price$ and $x");
    }
}
