//! Sharded vs one process, in one run: `neg skill-probe` on SmolLM2-135M-Instruct (the
//! packaged model, CPU), once as one process and once as `NEG_BENCH_SHARDS` (default 2) shard
//! processes running at the same time, then `neg merge`; the CPU cores are split between the
//! shards (`OMP_NUM_THREADS`), as between the GPUs of a cluster. Reports the wall time of each,
//! the merge's own time, and checks that the merged files equal the one-process files
//! (all but timings.json).
//!
//! `cargo bench --bench shard` (a few minutes on 2 cores). `NEG_BENCH_TASKS` (default
//! `agnews`) and `NEG_BENCH_SIZES` (train,valid,test; default 64,16,32) choose the work.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn neg(args: &[&str], threads: usize, cwd: &Path) -> anyhow::Result<Command> {
    let mut c = Command::new(env!("CARGO_BIN_EXE_neg"));
    c.args(args)
        .current_dir(cwd)
        .env("OMP_NUM_THREADS", threads.to_string())
        .stdout(std::process::Stdio::null());
    Ok(c)
}

fn files(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else {
                out.push((
                    p.strip_prefix(root)?.display().to_string(),
                    std::fs::read(&p)?,
                ));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// The largest |a - b| over the f32 tensors of two safetensors files, relative to the largest
/// |b| of the same tensor, with the tensor's name; tensors of other dtypes must be equal.
fn max_rel_diff(a: &[u8], b: &[u8]) -> anyhow::Result<String> {
    let (sa, sb) = (
        safetensors::SafeTensors::deserialize(a)?,
        safetensors::SafeTensors::deserialize(b)?,
    );
    let mut worst = (0f64, String::from("none"));
    for name in sa.names() {
        let (ta, tb) = (sa.tensor(name)?, sb.tensor(name)?);
        if ta.dtype() != safetensors::Dtype::F32 {
            if ta.data() != tb.data() {
                return Ok(format!("{name} ({:?}) differs", ta.dtype()));
            }
            continue;
        }
        let f = |d: &[u8]| -> Vec<f32> {
            d.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let (va, vb) = (f(ta.data()), f(tb.data()));
        let scale = vb
            .iter()
            .fold(0f32, |m, x| m.max(x.abs()))
            .max(f32::MIN_POSITIVE);
        let d = va
            .iter()
            .zip(&vb)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale;
        if d as f64 > worst.0 {
            worst = (d as f64, name.to_string());
        }
    }
    Ok(format!(
        "{:.1e} of the largest |value| (tensor {})",
        worst.0, worst.1
    ))
}

fn main() -> anyhow::Result<()> {
    let n = common::env_usize("NEG_BENCH_SHARDS", 2).max(1);
    let tasks = std::env::var("NEG_BENCH_TASKS").unwrap_or_else(|_| "agnews".into());
    let sizes = std::env::var("NEG_BENCH_SIZES").unwrap_or_else(|_| "64,16,32".into());
    let s: Vec<&str> = sizes.split(',').collect();
    anyhow::ensure!(
        s.len() == 3,
        "NEG_BENCH_SIZES={sizes:?} is not train,valid,test"
    );
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    let work = tempfile::tempdir()?;
    let cwd = work.path();
    let args = [
        "skill-probe",
        "--tasks",
        &tasks,
        "--train-size",
        s[0],
        "--valid-size",
        s[1],
        "--test-size",
        s[2],
        "--compact",
        "--quiet",
    ];
    let with = |more: &[&str]| -> Vec<String> {
        args.iter()
            .chain(more)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    let as_str = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<_>>().join(" ");

    let t = Instant::now();
    let one = with(&["--out", "one"]);
    let st = neg(
        &one.iter().map(String::as_str).collect::<Vec<_>>(),
        cores,
        cwd,
    )?
    .status()?;
    anyhow::ensure!(st.success(), "neg {} failed", as_str(&one));
    let one_s = t.elapsed().as_secs_f64();
    let reference = files(&cwd.join("one"))?;
    std::fs::rename(cwd.join("one"), cwd.join("one.ref"))?;

    let t = Instant::now();
    let threads = (cores / n).max(1);
    let mut children = Vec::new();
    for i in 1..=n {
        let shard = format!("{i}/{n}");
        let out = format!("s{i}");
        let a = with(&["--shard", &shard, "--out", &out]);
        children.push(
            neg(
                &a.iter().map(String::as_str).collect::<Vec<_>>(),
                threads,
                cwd,
            )?
            .spawn()?,
        );
    }
    for mut c in children {
        anyhow::ensure!(c.wait()?.success(), "a shard failed");
    }
    let shards_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut merge = vec!["merge".to_string(), "--out".into(), "one".into()];
    merge.extend((1..=n).map(|i| format!("s{i}")));
    let st = neg(
        &merge.iter().map(String::as_str).collect::<Vec<_>>(),
        cores,
        cwd,
    )?
    .status()?;
    anyhow::ensure!(st.success(), "neg merge failed");
    let merge_s = t.elapsed().as_secs_f64();
    let merged = files(&cwd.join("one"))?;
    let differing: Vec<&str> = reference
        .iter()
        .zip(&merged)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.0.as_str())
        .collect();
    anyhow::ensure!(
        reference.len() == merged.len(),
        "the merged run wrote other files"
    );
    // Other thread counts sum in another order: the shards' NeurGrad may differ from the one
    // process's in float rounding (with equal thread counts the files are byte-identical:
    // tests/neg_cli.rs). Measure by how much.
    let mut notes = Vec::new();
    for ((name, a), (_, b)) in reference.iter().zip(&merged) {
        if a == b || name == "timings.json" {
            continue;
        }
        if name.ends_with(".safetensors") {
            notes.push(format!(
                "{name}: largest difference {}",
                max_rel_diff(a, b)?
            ));
        } else {
            notes.push(format!("{name}: differs"));
        }
    }
    println!("neg {} on {cores} cores:", as_str(&with(&[])));
    println!("| run | wall seconds | vs one process |");
    println!("|---|---|---|");
    println!("| one process, {cores} threads | {one_s:.1} | 1.00 |");
    println!(
        "| {n} shards at once, {threads} thread(s) each | {shards_s:.1} | {:.2} |",
        shards_s / one_s
    );
    println!("| then neg merge | {merge_s:.1} | {:.2} |", merge_s / one_s);
    println!(
        "| shards + merge | {:.1} | {:.2} |",
        shards_s + merge_s,
        (shards_s + merge_s) / one_s
    );
    if notes.is_empty() {
        println!("\nmerged files equal the one-process files (all but timings.json)");
    } else {
        println!("\nmerged files that differ from the one-process files (timings.json aside):");
        for n in notes {
            println!("- {n}");
        }
    }
    let _ = differing;
    Ok(())
}
