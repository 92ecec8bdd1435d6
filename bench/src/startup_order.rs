//! `make startup-order`: writes functions/startup.ld, the linker script that gathers the code the
//! functions run before they ask Lambda for their first event at the front of their executable.
//!
//! The kernel maps an executable's code around each page fault, 64 KiB at a time. Start-up code
//! scattered through a 4-5 MB binary therefore makes most of it resident; gathered in one block it
//! makes resident little more than itself (BENCHMARKS.md, section 1).
//!
//! How: each function's unstripped release build (and the bare floor's), linked without the script
//! (valgrind attributes code in a section of its own to no object), starts under valgrind's
//! callgrind against a Lambda Runtime API of the bench's own, and is stopped at its first request
//! for work; the instructions it ran, looked up in its symbol table (`nm`), name the functions it
//! ran. The union of those, for every function, becomes one input section pattern each, without
//! what differs between builds and targets (the symbol hash, crate disambiguators, back
//! references), so that the same script serves x86_64 and arm64 builds, and a pattern that matches
//! nothing (code since changed) only leaves that function where it was.

use crate::coldstart::{run_until_ready, Subject};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Start-ups recorded per subject; their union is kept.
const RUNS: usize = 3;

/// The output section the script makes, just before `.text`.
pub const SECTION: &str = ".text.bakery_startup";

/// Records each subject's start-up (its program an unstripped release binary linked without the
/// script) and writes the script to `out`; prints how much of each start-up the script that was
/// there already gathered.
pub fn write(subjects: &[Subject], scratch: &Path, out: &Path) -> Result<(), Error> {
    let current = std::fs::read_to_string(out)
        .map(|s| patterns_of(&s))
        .unwrap_or_default();
    let mut all = BTreeSet::new();
    for s in subjects {
        // What runs before the first request for work varies a little with the threads' timing.
        let mut ran = BTreeSet::new();
        for _ in 0..RUNS {
            ran.extend(record(s, scratch)?);
        }
        let gathered = ran.iter().filter(|f| current.iter().any(|p| glob(p, f))).count();
        eprintln!(
            "startup-order: {}: {} functions before its first request for work, {gathered} ({:.0}%) gathered by the script there was",
            s.name,
            ran.len(),
            100.0 * gathered as f64 / ran.len().max(1) as f64
        );
        all.extend(ran);
    }
    let patterns: BTreeSet<String> = all.iter().map(|s| pattern(s)).collect();
    std::fs::write(out, script(&patterns))?;
    eprintln!(
        "startup-order: {} functions, {} patterns, written to {}",
        all.len(),
        patterns.len(),
        out.display()
    );
    Ok(())
}

/// Runs one subject under callgrind until it asks for work: the functions (symbols) it ran.
fn record(s: &Subject, scratch: &Path) -> Result<BTreeSet<String>, Error> {
    // callgrind names the object by its full path.
    let binary = std::fs::canonicalize(&s.program).map_err(|e| format!("{}: {e}", s.program.display()))?;
    let out = scratch.join(format!("{}.callgrind", s.name));
    let mut traced = s.clone();
    traced.program = "valgrind".into();
    traced.args = [
        "--tool=callgrind",
        "--dump-instr=yes",
        "--compress-strings=no",
        "--compress-pos=no",
    ]
    .into_iter()
    .map(String::from)
    .chain([
        format!("--callgrind-out-file={}", out.display()),
        binary.display().to_string(),
    ])
    .collect();
    run_until_ready(&traced, scratch, libc::SIGTERM)
        .map_err(|e| format!("{}: {e} (is valgrind installed?)", s.name))?;
    let ran = executed_addresses(&std::fs::read_to_string(&out)?, &binary.display().to_string());
    if ran.is_empty() {
        return Err(format!("{}: callgrind recorded nothing in {}", s.name, binary.display()).into());
    }
    let symbols = symbols(&output("nm", &["-S", "--defined-only"], &binary)?);
    if symbols.is_empty() {
        return Err(format!(
            "{} has no symbol table: build it with CARGO_PROFILE_RELEASE_STRIP=false",
            binary.display()
        )
        .into());
    }
    if section_range(&output("readelf", &["-SW"], &binary)?, SECTION).is_some() {
        return Err(format!(
            "{} is linked with the script: callgrind cannot see into {SECTION}; build it with BAKERY_STARTUP_ORDER=off",
            binary.display()
        )
        .into());
    }
    Ok(functions_ran(&symbols, &ran))
}

fn output(program: &str, args: &[&str], binary: &Path) -> Result<String, Error> {
    let out = Command::new(program)
        .args(args)
        .arg(binary)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The instruction addresses callgrind saw run in `object` (`--dump-instr=yes`,
/// `--compress-strings=no`, `--compress-pos=no`: every cost line starts with its address).
pub fn executed_addresses(callgrind: &str, object: &str) -> BTreeSet<u64> {
    let mut inside = false;
    let mut out = BTreeSet::new();
    for line in callgrind.lines() {
        if let Some(ob) = line.strip_prefix("ob=") {
            inside = ob.trim() == object;
        } else if inside {
            if let Some(hex) = line.strip_prefix("0x") {
                if let Some(a) = hex
                    .split_whitespace()
                    .next()
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                {
                    out.insert(a);
                }
            }
        }
    }
    out
}

/// `nm -S` lines of code symbols: (address, size, name), by address.
pub fn symbols(nm: &str) -> Vec<(u64, u64, String)> {
    let mut out: Vec<(u64, u64, String)> = nm
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, size, kind, name) = (f.next()?, f.next()?, f.next()?, f.next()?);
            matches!(kind, "t" | "T" | "w" | "W").then_some(())?;
            Some((
                u64::from_str_radix(addr, 16).ok()?,
                u64::from_str_radix(size, 16).ok()?,
                name.to_owned(),
            ))
        })
        .collect();
    out.sort();
    out
}

/// The address range of a section in `readelf -SW` output.
pub fn section_range(readelf: &str, section: &str) -> Option<(u64, u64)> {
    readelf.lines().find_map(|l| {
        let rest = l.split_once(']')?.1;
        let mut f = rest.split_whitespace();
        (f.next()? == section).then_some(())?;
        let (_kind, addr, _off, size) = (f.next()?, f.next()?, f.next()?, f.next()?);
        let addr = u64::from_str_radix(addr, 16).ok()?;
        Some((addr, addr + u64::from_str_radix(size, 16).ok()?))
    })
}

/// The functions (by symbol) that hold any of `ran`.
pub fn functions_ran(symbols: &[(u64, u64, String)], ran: &BTreeSet<u64>) -> BTreeSet<String> {
    ran.iter()
        .filter_map(|&a| {
            let (start, size, name) = &symbols[symbols.partition_point(|s| s.0 <= a).checked_sub(1)?];
            (a < start + (*size).max(1)).then(|| name.clone())
        })
        .collect()
}

/// The patterns of a script [`script`] wrote.
pub fn patterns_of(script: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("*(.text.*")?.strip_suffix(')'))
        .map(str::to_owned)
        .collect()
}

/// Whether `name` matches `pattern`, whose only special character is `*` (any run, as in a linker
/// script; the script's patterns start with one).
pub fn glob(pattern: &str, name: &str) -> bool {
    let pattern = format!("*{pattern}");
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

/// A symbol as a pattern that finds it in any build: without the suffix LLVM numbers a local copy
/// with (`.1234`, `.llvm.1234`), and ending in `*` for the one it gets in another build; a legacy
/// symbol (`_ZN…17h<hash>E`) without its hash; a v0 symbol (`_R…`) without its crate
/// disambiguators (`Cs<hash>_`) and back references (`B<n>_`, which count bytes, so differ as the
/// hashes' lengths do).
pub fn pattern(symbol: &str) -> String {
    let mut symbol = symbol;
    while let Some((stem, n)) = symbol.rsplit_once('.') {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        symbol = stem.strip_suffix(".llvm").unwrap_or(stem);
    }
    let mut out = String::with_capacity(symbol.len() + 1);
    if let Some(stem) = symbol.strip_prefix("_ZN") {
        let hashed = stem.rfind("17h").filter(|&i| {
            let hash = &stem[i + 3..];
            hash.len() == 17 && hash.ends_with('E') && hash[..16].bytes().all(|b| b.is_ascii_hexdigit())
        });
        out.push_str("_ZN");
        out.push_str(match hashed {
            Some(i) => &stem[..i + 3],
            None => stem,
        });
    } else if symbol.starts_with("_R") {
        let b = symbol.as_bytes();
        let mut i = 0;
        // The base-62 number that runs from `from` up to its closing `_`, when it is one.
        let number_end = |from: usize, longest: usize| {
            let mut j = from;
            while j < b.len() && b[j].is_ascii_alphanumeric() && j - from < longest {
                j += 1;
            }
            (j < b.len() && b[j] == b'_').then_some(j)
        };
        while i < b.len() {
            if b[i..].starts_with(b"Cs") {
                if let Some(j) = number_end(i + 2, 16) {
                    out.push_str("Cs*_");
                    i = j + 1;
                    continue;
                }
            }
            if b[i] == b'B' {
                if let Some(j) = number_end(i + 1, 4) {
                    out.push('*');
                    i = j + 1;
                    continue;
                }
            }
            out.push(b[i] as char);
            i += 1;
        }
    } else {
        out.push_str(symbol);
    }
    out.push('*');
    while out.contains("**") {
        out = out.replace("**", "*");
    }
    out
}

/// The linker script: one output section before `.text` holding every matching function, cold or
/// not (`#[cold]` functions are in `.text.unlikely.<symbol>`).
pub fn script(patterns: &BTreeSet<String>) -> String {
    let mut s = String::new();
    s.push_str(
        "/* Written by `make startup-order` (bench/src/startup_order.rs); do not edit by hand.\n   \
         The functions Bakery's functions run before they ask Lambda for their first event, gathered\n   \
         at the front of the executable: functions/startup-link.rs links every release build for\n   \
         Linux with it. A pattern that matches nothing leaves that function where it was. */\n",
    );
    let _ = writeln!(s, "SECTIONS\n{{\n  {SECTION} :\n  {{");
    for p in patterns {
        let _ = writeln!(s, "    *(.text.*{p})");
    }
    s.push_str("  }\n}\nINSERT BEFORE .text;\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_symbol_loses_its_hash_only() {
        assert_eq!(
            pattern("_ZN10aws_config6loader12ConfigLoader4load28_$u7b$$u7b$closure$u7d$$u7d$17h9ed5bcc7f8ea0103E"),
            "_ZN10aws_config6loader12ConfigLoader4load28_$u7b$$u7b$closure$u7d$$u7d$17h*"
        );
        // No hash where one would be: kept whole.
        assert_eq!(pattern("_ZN4core3fmt5write17hnothexE"), "_ZN4core3fmt5write17hnothexE*");
        // A local copy's number goes.
        assert_eq!(
            pattern("_ZN75_$LT$aws_runtime..user_agent..ApiMetadata$u20$as$u20$core..clone..Clone$GT$5clone17h09ac2b90881e75beE.1065"),
            "_ZN75_$LT$aws_runtime..user_agent..ApiMetadata$u20$as$u20$core..clone..Clone$GT$5clone17h*"
        );
    }

    #[test]
    fn a_v0_symbol_loses_crate_hashes_and_back_references() {
        assert_eq!(
            pattern("_RNvMs1_NtCsgvbsrvnw3yD_9hashbrown3rawNtB5_11TableLayout20calculate_layout_for"),
            "_RNvMs1_NtCs*_9hashbrown3rawNt*11TableLayout20calculate_layout_for*"
        );
        assert_eq!(
            pattern("_RNvMs4_NtCslNYArtu3iFV_5alloc7raw_vecNtB5_11RawVecInner11finish_growCsjrHSEGnQ3l9_3std"),
            "_RNvMs4_NtCs*_5alloc7raw_vecNt*11RawVecInner11finish_growCs*_3std*"
        );
        assert_eq!(
            pattern("_RNvNtCslNYArtu3iFV_5alloc5boxed14box_new_uninit.8052"),
            pattern("_RNvNtCsQ_5alloc5boxed14box_new_uninit.llvm.361")
        );
        // Two builds of one function (other hashes, other back-reference offsets) share it.
        assert_eq!(
            pattern("_RNvNtNtCsjrHSEGnQ3l9_3std6thread7current12init_current"),
            pattern("_RNvNtNtCsAbC_3std6thread7current12init_current")
        );
        // C symbols are themselves.
        assert_eq!(
            pattern("aws_lc_0_47_0_sha256_block_data_order"),
            "aws_lc_0_47_0_sha256_block_data_order*"
        );
    }

    #[test]
    fn callgrind_addresses_are_taken_from_the_named_object_only() {
        let cg = "ob=/usr/lib/libc.so.6\nfn=memcpy\n0x1000 1 1\nob=/x/trigger\nfn=main\n0x2714b3 0 1\n0x2714b4 0 1\ncalls=1 0x10\n0x2714b8 0 5\nob=/usr/lib/libc.so.6\n0x1010 1 1\n";
        assert_eq!(
            executed_addresses(cg, "/x/trigger"),
            BTreeSet::from([0x2714b3, 0x2714b4, 0x2714b8])
        );
    }

    #[test]
    fn addresses_name_the_functions_that_hold_them() {
        let nm = "0000000000001000 0000000000000010 t first\n0000000000001010 0000000000000020 T second\n\
                  0000000000002000 0000000000000008 d data\n0000000000003000 0000000000000010 t third\n";
        let syms = symbols(nm);
        assert_eq!(syms.len(), 3, "data symbols are left out");
        let ran = BTreeSet::from([0x1004, 0x100f, 0x1020, 0x2fff]);
        assert_eq!(
            functions_ran(&syms, &ran),
            BTreeSet::from(["first".to_owned(), "second".to_owned()])
        );
    }

    #[test]
    fn the_section_range_is_read_from_readelf() {
        let readelf = "  [15] .text.bakery_startup PROGBITS        0000000000261270 260270 0d8228 00  AX  0   0 16\n  \
                       [16] .text             PROGBITS        00000000003394c0 3384c0 39c732 00  AX  0   0 64\n";
        assert_eq!(section_range(readelf, SECTION), Some((0x261270, 0x261270 + 0xd8228)));
        assert_eq!(section_range(readelf, ".rodata"), None);
    }

    #[test]
    fn the_script_matches_cold_and_hot_sections_before_text() {
        let p = pattern("_ZN5bytes5bytes17shallow_clone_vec17hb78ac177891c11bfE");
        let s = script(&BTreeSet::from([p.clone()]));
        assert!(s.contains("    *(.text.*_ZN5bytes5bytes17shallow_clone_vec17h*)\n"));
        assert!(s.trim_end().ends_with("INSERT BEFORE .text;"));
        assert_eq!(patterns_of(&s), vec![p]);
    }

    #[test]
    fn patterns_match_as_the_linker_matches_them() {
        let p = pattern("_ZN5bytes5bytes17shallow_clone_vec17hb78ac177891c11bfE");
        assert!(glob(&p, "_ZN5bytes5bytes17shallow_clone_vec17h0123456789abcdefE"));
        assert!(!glob(&p, "_ZN5bytes5bytes9split_off17h0123456789abcdefE"));
        let v0 = pattern("_RNvMs4_NtCslNYArtu3iFV_5alloc7raw_vecNtB5_11RawVecInner11finish_growCsjrHSEGnQ3l9_3std");
        assert!(glob(
            &v0,
            "_RNvMs4_NtCsXyZ_5alloc7raw_vecNtB7_11RawVecInner11finish_growCsQq_3std"
        ));
        assert!(glob(
            &v0,
            "_RNvMs4_NtCsXyZ_5alloc7raw_vecNtB7_11RawVecInner11finish_growCsQq_3std.77"
        ));
        assert!(!glob(
            &v0,
            "_RNvMs4_NtCsXyZ_5alloc7raw_vecNtB7_11RawVecInner7reserveCsQq_3std"
        ));
        assert!(glob("abc", "abc") && !glob("abc", "abcd") && glob("a*d", "abcd"));
    }
}
