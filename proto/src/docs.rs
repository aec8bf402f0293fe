//! Man pages and shell completions of a command, made when the packages are built
//! (`packaging/build.sh` runs each binary's hidden `generate-docs --out DIR`), so that what they
//! say is what the binary's `--help` says.

use std::path::Path;

use clap_complete::Shell;

/// Writes `DIR/man/NAME.1` and one page per sub-command (`NAME-SUB.1`), and
/// `DIR/completions/{NAME.bash,_NAME,NAME.fish}`.
pub fn write(command: clap::Command, out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    // Hidden sub-commands (`generate-docs` itself) get neither a page nor a completion.
    let name = command.get_name().to_owned();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command.clone(), &name, &completions)?;
    }
    clap_mangen::generate_to(command, &man)
}
