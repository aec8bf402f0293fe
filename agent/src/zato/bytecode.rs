//! Whether Zato's own code has its Python bytecode. Every `zato` command, and every component
//! start, is a Python process that imports hundreds of Zato's modules; without `__pycache__`
//! next to them (an install whose code its users may not write, or `PYTHONDONTWRITEBYTECODE`),
//! each compiles them all again: `zato --version` took 3.1-3.5 s that way on 2 cores, 2.0-2.3 s
//! with them compiled. The agent says so once, at start, with the command that compiles them.

use std::path::{Path, PathBuf};

/// What was found of the compiled modules of a Zato install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bytecode {
    /// Zato's code directory (`ZATO_HOME/code`).
    pub code: PathBuf,
    /// Modules of Zato's own packages looked at (the top of each package's `src/zato/*/`).
    pub modules: usize,
    /// Those without a compiled file in their `__pycache__`.
    pub uncompiled: usize,
}

impl Bytecode {
    /// Looks at the install `zato_bin` belongs to (`ZATO_HOME/code/bin/zato`); `None` when it is
    /// not laid out as Zato's installer lays it out.
    pub fn of(zato_bin: &Path) -> Option<Bytecode> {
        let bin = std::fs::canonicalize(zato_bin).ok()?;
        let code = bin.parent()?.parent()?.to_owned();
        let mut modules = 0;
        let mut uncompiled = 0;
        for package in std::fs::read_dir(&code).ok()?.flatten() {
            let name = package.file_name().to_string_lossy().into_owned();
            if !name.starts_with("zato-") {
                continue;
            }
            let Ok(subpackages) = std::fs::read_dir(package.path().join("src/zato")) else {
                continue;
            };
            for subpackage in subpackages.flatten().filter(|entry| entry.path().is_dir()) {
                let Ok(files) = std::fs::read_dir(subpackage.path()) else {
                    continue;
                };
                for module in files.flatten() {
                    let file_name = module.file_name().to_string_lossy().into_owned();
                    let Some(stem) = file_name.strip_suffix(".py") else {
                        continue;
                    };
                    modules += 1;
                    if !compiled(&subpackage.path().join("__pycache__"), stem) {
                        uncompiled += 1;
                    }
                }
            }
        }
        (modules > 0).then_some(Bytecode {
            code,
            modules,
            uncompiled,
        })
    }

    /// Most of Zato's modules have no bytecode.
    pub fn missing(&self) -> bool {
        self.uncompiled * 2 > self.modules
    }

    /// The command that compiles them, to run once as the user that owns the code.
    pub fn remedy(&self) -> String {
        let code = self.code.display();
        format!("{code}/bin/python -m compileall -q -j 0 {code}/zato-*/src")
    }
}

/// Whether `cache` holds a compiled `stem` for some Python (`stem.cpython-310.pyc`, ...).
fn compiled(cache: &Path, stem: &str) -> bool {
    let prefix = format!("{stem}.");
    std::fs::read_dir(cache).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix) && name.ends_with(".pyc")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ZATO_HOME/code` with two modules of `zato-common`, `compiled` of them with bytecode.
    fn install(compiled: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let code = root.path().join("code");
        let package = code.join("zato-common/src/zato/common");
        std::fs::create_dir_all(package.join("__pycache__")).unwrap();
        std::fs::create_dir_all(code.join("bin")).unwrap();
        std::fs::write(code.join("bin/zato"), "#!/bin/sh\n").unwrap();
        for module in ["api", "util"] {
            std::fs::write(package.join(format!("{module}.py")), "").unwrap();
        }
        for module in compiled {
            std::fs::write(
                package.join(format!("__pycache__/{module}.cpython-310.pyc")),
                "",
            )
            .unwrap();
        }
        let zato = code.join("bin/zato");
        (root, zato)
    }

    #[test]
    fn an_install_without_bytecode_is_found_and_the_command_that_compiles_it_named() {
        let (_root, zato) = install(&[]);
        let found = Bytecode::of(&zato).unwrap();
        assert_eq!((found.modules, found.uncompiled), (2, 2));
        assert!(found.missing());
        let code = std::fs::canonicalize(zato.parent().unwrap().parent().unwrap()).unwrap();
        assert_eq!(
            found.remedy(),
            format!(
                "{0}/bin/python -m compileall -q -j 0 {0}/zato-*/src",
                code.display()
            )
        );

        let (_root, zato) = install(&["api", "util"]);
        let found = Bytecode::of(&zato).unwrap();
        assert_eq!((found.modules, found.uncompiled), (2, 0));
        assert!(!found.missing());
    }

    #[test]
    fn a_zato_that_is_not_laid_out_as_zatos_installer_lays_it_out_is_not_judged() {
        let root = tempfile::tempdir().unwrap();
        let zato = root.path().join("zato");
        std::fs::write(&zato, "").unwrap();
        assert_eq!(Bytecode::of(&zato), None);
        assert_eq!(Bytecode::of(Path::new("/nonexistent/zato")), None);
    }
}
