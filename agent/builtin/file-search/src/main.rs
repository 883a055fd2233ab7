//! Local file search skill (wasm32-wasi command).
//! Input: argv[1] is the query; argv[2..] are the folders the user granted (the sandbox
//! mounts each read-only at its own path; nothing else of the disk is visible).
//! Output: the best matching files, one per line: "path:line: text" (or "path" for a
//! name-only match). Hidden files and files over 2 MB are skipped.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE: u64 = 2 * 1024 * 1024;
const MAX_FILES: usize = 20_000;
const MAX_DEPTH: usize = 12;
const MAX_RESULTS: usize = 20;

struct Hit {
    score: usize,
    path: PathBuf,
    line: usize,
    text: String,
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH || out.len() >= MAX_FILES {
        return;
    }
    let mut entries: Vec<_> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).collect(),
        Err(_) => return,
    };
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, depth + 1, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
        if out.len() >= MAX_FILES {
            return;
        }
    }
}

fn search_file(path: &Path, terms: &[String]) -> Option<Hit> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    let name_score = terms.iter().filter(|t| name.contains(t.as_str())).count() * 3;
    let meta = fs::metadata(path).ok()?;
    let mut best: Option<Hit> = None;
    if meta.len() <= MAX_FILE {
        if let Ok(bytes) = fs::read(path) {
            if !bytes.iter().take(1024).any(|b| *b == 0) {
                let text = String::from_utf8_lossy(&bytes);
                let mut count = 0usize;
                for (no, line) in text.lines().enumerate() {
                    let low = line.to_lowercase();
                    let found = terms.iter().filter(|t| low.contains(t.as_str())).count();
                    if found == 0 {
                        continue;
                    }
                    count += found;
                    if best.as_ref().map_or(true, |b| found * 10 > b.score) {
                        let snippet: String = line.trim().chars().take(160).collect();
                        best = Some(Hit { score: found * 10, path: path.to_path_buf(), line: no + 1, text: snippet });
                    }
                }
                if let Some(b) = best.as_mut() {
                    b.score += count + name_score;
                }
            }
        }
    }
    if best.is_none() && name_score > 0 {
        best = Some(Hit { score: name_score, path: path.to_path_buf(), line: 0, text: String::new() });
    }
    best
}

fn main() {
    let args: Vec<String> = env::args().collect();
    let query = args.get(1).cloned().unwrap_or_default();
    let terms: Vec<String> = query
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '.' && c != '_' && c != '-')
        .filter(|t| t.len() >= 2 && !["find", "search", "files", "file", "for", "the", "my", "in", "with", "about", "where", "is"].contains(t))
        .map(|t| t.to_string())
        .collect();
    if args.len() < 3 {
        eprintln!("no folder granted: grant one with --folder DIR");
        std::process::exit(2);
    }
    if terms.is_empty() {
        eprintln!("give me words to look for");
        std::process::exit(2);
    }
    let mut files = Vec::new();
    for folder in &args[2..] {
        walk(Path::new(folder), 0, &mut files);
    }
    let mut hits: Vec<Hit> = files.iter().filter_map(|p| search_file(p, &terms)).collect();
    hits.sort_by(|a, b| b.score.cmp(&a.score).then(a.path.cmp(&b.path)));
    if hits.is_empty() {
        println!("no files match: {}", terms.join(" "));
        return;
    }
    for hit in hits.iter().take(MAX_RESULTS) {
        if hit.line == 0 {
            println!("{}", hit.path.display());
        } else {
            println!("{}:{}: {}", hit.path.display(), hit.line, hit.text);
        }
    }
}
