//! Hostile: tries every way out of its filesystem grants and past the
//! per-call caps of a read-write grant.
//!
//! The manifest grants `/data` read-only and `/scratch` read-write. Each tool
//! is one attack; it reports, per attempt, what it managed to read or write
//! or the error it got, and never fails itself, so the test sees everything.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stockade_sdk::{Output, Tool, ToolError, Toolbox};
use wasi::filesystem::preopens::get_directories;
use wasi::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

/// What one attempt gave the tool.
#[derive(Serialize)]
struct Attempt {
    /// The operation, e.g. `read`, `rename`.
    op: String,
    /// The path (or paths) it was aimed at.
    path: String,
    /// Whether the operation succeeded.
    ok: bool,
    /// What was read or done, when it succeeded.
    got: String,
    /// The error class (`std::io::ErrorKind` or WASI error code name).
    kind: String,
    /// The error message.
    error: String,
}

impl Attempt {
    fn io<T>(op: &str, path: &str, result: std::io::Result<T>, show: impl Fn(T) -> String) -> Self {
        match result {
            Ok(value) => Self::success(op, path, show(value)),
            Err(err) => Self::failure(op, path, format!("{:?}", err.kind()), err.to_string()),
        }
    }

    fn wasi<T>(
        op: &str,
        path: &str,
        result: Result<T, ErrorCode>,
        show: impl Fn(T) -> String,
    ) -> Self {
        match result {
            Ok(value) => Self::success(op, path, show(value)),
            Err(code) => Self::failure(op, path, code.name().to_owned(), code.message().to_owned()),
        }
    }

    fn success(op: &str, path: &str, got: String) -> Self {
        Self {
            op: op.into(),
            path: path.into(),
            ok: true,
            got,
            kind: String::new(),
            error: String::new(),
        }
    }

    fn failure(op: &str, path: &str, kind: String, error: String) -> Self {
        Self {
            op: op.into(),
            path: path.into(),
            ok: false,
            got: String::new(),
            kind,
            error,
        }
    }
}

/// Shows at most 4 KiB of what was read.
fn shown(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned()
}

fn read(path: &str) -> Attempt {
    Attempt::io("read", path, fs::read(path), shown)
}

fn list(path: &str) -> Attempt {
    let names = fs::read_dir(path).and_then(|entries| {
        entries
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<Vec<_>>>()
    });
    Attempt::io("list", path, names, |n| n.join(","))
}

fn append(path: &str, text: &str) -> Attempt {
    let result = OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    Attempt::io("append", path, result, |()| format!("appended {text}"))
}

fn truncate(path: &str) -> Attempt {
    let result = OpenOptions::new().write(true).truncate(true).open(path);
    Attempt::io("truncate", path, result, |_| "truncated".into())
}

/// The preopened directory the host granted at `guest`.
fn preopen(guest: &str) -> Result<Descriptor, ErrorCode> {
    get_directories()
        .into_iter()
        .find(|(_, name)| name == guest)
        .map(|(dir, _)| dir)
        .ok_or(ErrorCode::NoEntry)
}

/// Opens `path` under preopen `guest` through `wasi:filesystem` directly,
/// without wasi-libc's path handling in between.
fn open_raw(
    guest: &str,
    path: &str,
    open: OpenFlags,
    flags: DescriptorFlags,
) -> Result<Descriptor, ErrorCode> {
    preopen(guest)?.open_at(PathFlags::SYMLINK_FOLLOW, path, open, flags)
}

fn read_raw(guest: &str, path: &str) -> Attempt {
    let result = open_raw(guest, path, OpenFlags::empty(), DescriptorFlags::READ)
        .and_then(|file| file.read(4096, 0).map(|(bytes, _)| bytes));
    Attempt::wasi("open_at+read", &format!("{guest} :: {path}"), result, shown)
}

fn json(attempts: &impl Serialize) -> Result<Output, ToolError> {
    serde_json::to_string(attempts)
        .map(Output::text)
        .map_err(|e| ToolError::Failed(e.to_string()))
}

/// No arguments.
#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

/// Host paths to aim at.
#[derive(Deserialize, JsonSchema)]
struct PathsArgs {
    /// Absolute paths, e.g. the host path of a grant.
    #[serde(default)]
    paths: Vec<String>,
}

fn dotdot_escape(_: NoArgs) -> Result<Output, ToolError> {
    let mut attempts: Vec<Attempt> = [
        "/data/../../etc/passwd",
        "/data/../secret",
        "/data/sub/../../secret",
        "/data/../../../../../../etc/passwd",
        "/scratch/../secret",
        "../secret",
        "data/../secret",
    ]
    .iter()
    .map(|p| read(p))
    .collect();
    attempts.push(list("/data/.."));
    attempts.push(read_raw("/data", "../secret"));
    attempts.push(read_raw("/data", "sub/../../secret"));
    attempts.push(read_raw("/data", "../../../../etc/passwd"));
    json(&attempts)
}

fn absolute_escape(args: PathsArgs) -> Result<Output, ToolError> {
    let mut attempts: Vec<Attempt> = ["/etc/passwd", "/etc/hostname", "/secret"]
        .iter()
        .map(|p| read(p))
        .collect();
    for path in &args.paths {
        attempts.push(read(path));
        attempts.push(list(path));
        attempts.push(read_raw("/data", path));
    }
    attempts.push(list("/"));
    attempts.push(read_raw("/data", "/etc/passwd"));
    json(&attempts)
}

fn symlink_escape(_: NoArgs) -> Result<Output, ToolError> {
    let attempts = vec![
        read("/data/link"),
        read("/data/dirlink/secret"),
        list("/data/dirlink"),
        read_raw("/data", "link"),
        read_raw("/data", "dirlink/secret"),
        append("/scratch/link", "PWNED"),
        truncate("/scratch/link"),
        Attempt::io(
            "create",
            "/scratch/dirlink/planted.txt",
            fs::write("/scratch/dirlink/planted.txt", "PWNED"),
            |()| "created".into(),
        ),
    ];
    json(&attempts)
}

fn hardlink_escape(_: NoArgs) -> Result<Output, ToolError> {
    let mut attempts = vec![
        read("/data/hl"),
        read_raw("/data", "hl"),
        Attempt::io("stat", "/data/hl", fs::metadata("/data/hl"), |m| {
            format!("size {}", m.len())
        }),
        append("/scratch/hl", "PWNED"),
        truncate("/scratch/hl"),
    ];
    let raw = open_raw(
        "/scratch",
        "hl",
        OpenFlags::TRUNCATE,
        DescriptorFlags::READ | DescriptorFlags::WRITE,
    );
    attempts.push(Attempt::wasi(
        "open_at truncate",
        "/scratch :: hl",
        raw,
        |_| "truncated".into(),
    ));
    let written = open_raw("/scratch", "hl", OpenFlags::empty(), DescriptorFlags::WRITE)
        .and_then(|f| f.write(b"PWNED", 0));
    attempts.push(Attempt::wasi("pwrite", "/scratch :: hl", written, |n| {
        format!("wrote {n}")
    }));
    json(&attempts)
}

fn read_prefix(path: &str) -> Attempt {
    let result = File::open(path).and_then(|mut f| {
        let mut buf = [0u8; 16];
        f.read_exact(&mut buf).map(|()| buf.to_vec())
    });
    Attempt::io("read16", path, result, |b| format!("{b:?}"))
}

fn proc_and_dev(_: NoArgs) -> Result<Output, ToolError> {
    let attempts = vec![
        read("/proc/self/environ"),
        read("/proc/self/cmdline"),
        read("/proc/self/maps"),
        read("/proc/1/environ"),
        read("/data/../../proc/self/environ"),
        read_prefix("/dev/zero"),
        read_prefix("/dev/urandom"),
        // A FIFO the host planted in the grant: opening it would block.
        read_prefix("/data/fifo"),
        Attempt::io("write", "/dev/null", fs::write("/dev/null", "x"), |()| {
            "written".into()
        }),
        list("/proc"),
        list("/dev"),
        read_raw("/data", "/proc/self/environ"),
        read_raw("/data", "/dev/zero"),
    ];
    json(&attempts)
}

fn ro_mutations(_: NoArgs) -> Result<Output, ToolError> {
    let mut attempts = vec![
        Attempt::io(
            "create",
            "/data/new.txt",
            File::create("/data/new.txt"),
            |_| "created".into(),
        ),
        truncate("/data/inside.txt"),
        append("/data/inside.txt", "PWNED"),
        Attempt::io(
            "overwrite",
            "/data/inside.txt",
            OpenOptions::new()
                .write(true)
                .open("/data/inside.txt")
                .and_then(|mut f| f.write_all(b"PWNED")),
            |()| "overwritten".into(),
        ),
        Attempt::io(
            "set_len",
            "/data/inside.txt",
            File::open("/data/inside.txt").and_then(|f| f.set_len(0)),
            |()| "resized".into(),
        ),
        Attempt::io(
            "rename",
            "/data/inside.txt -> /data/moved.txt",
            fs::rename("/data/inside.txt", "/data/moved.txt"),
            |()| "renamed".into(),
        ),
        Attempt::io(
            "rename",
            "/data/inside.txt -> /scratch/moved.txt",
            fs::rename("/data/inside.txt", "/scratch/moved.txt"),
            |()| "renamed".into(),
        ),
        Attempt::io(
            "remove",
            "/data/inside.txt",
            fs::remove_file("/data/inside.txt"),
            |()| "removed".into(),
        ),
        Attempt::io(
            "mkdir",
            "/data/newdir",
            fs::create_dir("/data/newdir"),
            |()| "created".into(),
        ),
        Attempt::io("rmdir", "/data/sub", fs::remove_dir("/data/sub"), |()| {
            "removed".into()
        }),
        Attempt::io(
            "link",
            "/data/inside.txt -> /data/hl2",
            fs::hard_link("/data/inside.txt", "/data/hl2"),
            |()| "linked".into(),
        ),
    ];
    let data = preopen("/data");
    attempts.push(Attempt::wasi(
        "symlink_at",
        "/data :: sl -> inside.txt",
        data.as_ref()
            .map_err(|e| *e)
            .and_then(|d| d.symlink_at("inside.txt", "sl")),
        |()| "linked".into(),
    ));
    let pwrite = open_raw(
        "/data",
        "inside.txt",
        OpenFlags::empty(),
        DescriptorFlags::READ,
    )
    .and_then(|f| f.write(b"PWNED", 0));
    attempts.push(Attempt::wasi(
        "pwrite",
        "/data :: inside.txt",
        pwrite,
        |n| format!("wrote {n}"),
    ));
    let stream = open_raw(
        "/data",
        "inside.txt",
        OpenFlags::empty(),
        DescriptorFlags::READ,
    )
    .and_then(|f| f.append_via_stream());
    attempts.push(Attempt::wasi(
        "append_via_stream",
        "/data :: inside.txt",
        stream,
        |_| "stream opened".into(),
    ));
    json(&attempts)
}

fn move_out(_: NoArgs) -> Result<Output, ToolError> {
    let mut attempts = vec![Attempt::io(
        "create",
        "/scratch/f.txt",
        fs::write("/scratch/f.txt", "moving"),
        |()| "created".into(),
    )];
    for target in [
        "/scratch/../moved.txt",
        "/data/moved.txt",
        "/tmp/moved.txt",
        "/moved.txt",
    ] {
        attempts.push(Attempt::io(
            "rename",
            &format!("/scratch/f.txt -> {target}"),
            fs::rename("/scratch/f.txt", target),
            |()| "renamed".into(),
        ));
    }
    for target in [
        "/scratch/../linked.txt",
        "/scratch/linked.txt",
        "/data/linked.txt",
    ] {
        attempts.push(Attempt::io(
            "link",
            &format!("/scratch/f.txt -> {target}"),
            fs::hard_link("/scratch/f.txt", target),
            |()| "linked".into(),
        ));
    }
    if let Ok(work) = preopen("/scratch") {
        attempts.push(Attempt::wasi(
            "rename_at",
            "/scratch :: f.txt -> ../moved.txt",
            work.rename_at("f.txt", &work, "../moved.txt"),
            |()| "renamed".into(),
        ));
        attempts.push(Attempt::wasi(
            "link_at",
            "/scratch :: f.txt -> ../linked.txt",
            work.link_at(PathFlags::empty(), "f.txt", &work, "../linked.txt"),
            |()| "linked".into(),
        ));
        attempts.push(Attempt::wasi(
            "symlink_at",
            "/scratch :: out -> ../secret",
            work.symlink_at("../secret", "out"),
            |()| "linked".into(),
        ));
        attempts.push(read("/scratch/out"));
        attempts.push(Attempt::wasi(
            "symlink_at",
            "/scratch :: abs -> /etc/passwd",
            work.symlink_at("/etc/passwd", "abs"),
            |()| "linked".into(),
        ));
        attempts.push(read("/scratch/abs"));
    }
    json(&attempts)
}

/// Symlinks to try to create in `/scratch`.
#[derive(Deserialize, JsonSchema)]
struct LinkArgs {
    /// Pairs of (target, link path under `/scratch`).
    links: Vec<(String, String)>,
}

/// Tries `symlink-at` for each pair and reports every outcome.
fn plant_links(args: LinkArgs) -> Result<Output, ToolError> {
    let work = preopen("/scratch").map_err(|code| ToolError::Failed(code.to_string()))?;
    let attempts: Vec<Attempt> = args
        .links
        .iter()
        .map(|(target, link)| {
            Attempt::wasi(
                "symlink_at",
                &format!("/scratch :: {link} -> {target}"),
                work.symlink_at(target, link),
                |()| "linked".into(),
            )
        })
        .collect();
    json(&attempts)
}

/// How many entries to create in `/scratch`.
#[derive(Deserialize, JsonSchema)]
struct FillArgs {
    /// Entries to try to create.
    count: u32,
    /// Create directories instead of files.
    #[serde(default)]
    dirs: bool,
    /// Prefix of the names, so calls can create distinct entries.
    #[serde(default)]
    prefix: String,
}

/// What a fill did.
#[derive(Serialize)]
struct Filled {
    created: u32,
    stopped_by: Option<Attempt>,
    /// Opening an existing file with `create` after the loop (files only).
    reopen_existing: Option<Attempt>,
}

fn fill_files(args: FillArgs) -> Result<Output, ToolError> {
    let mut created = 0;
    let mut stopped_by = None;
    for i in 0..args.count {
        let prefix = &args.prefix;
        let path = if args.dirs {
            format!("/scratch/{prefix}dir-{i}")
        } else {
            format!("/scratch/{prefix}file-{i}")
        };
        let result = if args.dirs {
            fs::create_dir(&path)
        } else {
            fs::write(&path, "x")
        };
        match result {
            Ok(()) => created += 1,
            Err(err) => {
                stopped_by = Some(Attempt::io("create", &path, Err::<(), _>(err), |()| {
                    String::new()
                }));
                break;
            }
        }
    }
    let reopen_existing = (!args.dirs && created > 0).then(|| {
        let first = format!("/scratch/{}file-0", args.prefix);
        let reopen = OpenOptions::new().create(true).append(true).open(&first);
        Attempt::io("reopen", &first, reopen, |_| "opened".into())
    });
    json(&Filled {
        created,
        stopped_by,
        reopen_existing,
    })
}

/// How to grow `/scratch/big.bin`.
#[derive(Deserialize, JsonSchema)]
struct GrowArgs {
    /// `write`, `append`, `seek`, `set_len`, `pwrite`, `append_stream` or `two_appenders`.
    how: String,
    /// Size to reach, in bytes.
    bytes: u64,
}

/// What a growth did.
#[derive(Serialize)]
struct Grown {
    how: String,
    size: u64,
    error: Option<Attempt>,
}

const CHUNK: usize = 4096;

fn grow(how: &str, bytes: u64) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{:?}: {e}", e.kind());
    let code = |e: ErrorCode| format!("{}: {}", e.name(), e.message());
    match how {
        "write" => fs::write("/scratch/big.bin", vec![b'x'; bytes as usize]).map_err(io),
        "append" => {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open("/scratch/big.bin")
                .map_err(io)?;
            let chunk = [b'x'; 65536];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                file.write_all(&chunk[..n]).map_err(io)?;
                left -= n as u64;
            }
            Ok(())
        }
        "seek" => {
            let mut file = File::create("/scratch/big.bin").map_err(io)?;
            file.seek(SeekFrom::Start(bytes - 1)).map_err(io)?;
            file.write_all(b"x").map_err(io)
        }
        "set_len" => File::create("/scratch/big.bin")
            .and_then(|f| f.set_len(bytes))
            .map_err(io),
        "pwrite" => {
            let file = open_raw(
                "/scratch",
                "big.bin",
                OpenFlags::CREATE,
                DescriptorFlags::WRITE,
            )
            .map_err(code)?;
            file.write(b"x", bytes - 1).map(|_| ()).map_err(code)
        }
        "append_stream" | "two_appenders" => {
            let file = open_raw(
                "/scratch",
                "big.bin",
                OpenFlags::CREATE,
                DescriptorFlags::WRITE,
            )
            .map_err(code)?;
            let streams = if how == "two_appenders" { 2 } else { 1 };
            let outs = (0..streams)
                .map(|_| file.append_via_stream())
                .collect::<Result<Vec<_>, _>>()
                .map_err(code)?;
            let chunk = [b'x'; CHUNK];
            let mut left = bytes;
            let mut turn = 0;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                outs[turn % streams]
                    .blocking_write_and_flush(&chunk[..n])
                    .map_err(|e| match e {
                        wasi::io::streams::StreamError::LastOperationFailed(err) => {
                            match wasi::filesystem::types::filesystem_error_code(&err) {
                                Some(c) => code(c),
                                None => err.to_debug_string(),
                            }
                        }
                        wasi::io::streams::StreamError::Closed => "closed".into(),
                    })?;
                left -= n as u64;
                turn += 1;
            }
            Ok(())
        }
        other => Err(format!("unknown way to grow a file: {other}")),
    }
}

fn grow_file(args: GrowArgs) -> Result<Output, ToolError> {
    if args.bytes == 0 {
        return Err(ToolError::InvalidInput("bytes: must be at least 1".into()));
    }
    let error = grow(&args.how, args.bytes).err().map(|e| {
        let (kind, message) = e.split_once(": ").unwrap_or((&e, ""));
        Attempt::failure("grow", "/scratch/big.bin", kind.into(), message.into())
    });
    let size = fs::metadata("/scratch/big.bin")
        .map(|m| m.len())
        .unwrap_or(0);
    json(&Grown {
        how: args.how,
        size,
        error,
    })
}

/// A file to read.
#[derive(Deserialize, JsonSchema)]
struct ReadArgs {
    /// Guest path, e.g. `/data/inside.txt`.
    path: String,
}

fn read_file(args: ReadArgs) -> Result<Output, ToolError> {
    fs::read_to_string(&args.path)
        .map(Output::text)
        .map_err(|e| ToolError::Failed(format!("{}: {e}", args.path)))
}

struct FsAttacks;

impl Toolbox for FsAttacks {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new(
                "dotdot_escape",
                "Reads outside /data through `..`.",
                dotdot_escape,
            ),
            Tool::new(
                "absolute_escape",
                "Reads absolute paths outside the grants, and the given host paths.",
                absolute_escape,
            ),
            Tool::new(
                "symlink_escape",
                "Follows planted symlinks that point outside the grants.",
                symlink_escape,
            ),
            Tool::new(
                "hardlink_escape",
                "Reads and writes planted hard links to files outside the grants.",
                hardlink_escape,
            ),
            Tool::new(
                "proc_and_dev",
                "Reads /proc, /dev and a FIFO planted in /data.",
                proc_and_dev,
            ),
            Tool::new(
                "ro_mutations",
                "Tries every mutation of the read-only grant /data.",
                ro_mutations,
            ),
            Tool::new(
                "move_out",
                "Renames and links a file of /scratch to outside the grants.",
                move_out,
            ),
            Tool::new(
                "fill_files",
                "Creates many entries in /scratch.",
                fill_files,
            ),
            Tool::new(
                "grow_file",
                "Grows /scratch/big.bin one way or another.",
                grow_file,
            ),
            Tool::new(
                "plant_links",
                "Tries to create each given symlink in /scratch.",
                plant_links,
            ),
            Tool::new("read_file", "Reads a file (a benign call).", read_file),
        ]
    }
}

stockade_sdk::export_toolbox!(FsAttacks);
