//! Control sockets: each serving process listens on `serve-PID.sock` in
//! the control directory (mode 0600, and the peer's user checked with
//! `SO_PEERCRED`: the directory's owner or root only). A connection sends
//! one [`Notice`] as a JSON line and reads one [`Answer`] line back.
//! [`tell_all`] is the other side: it tells every live process, and
//! removes the sockets of processes that are gone.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::{Control, ControlError, Notice};

/// Longest notice accepted, in bytes.
const MAX_NOTICE: u64 = 64 * 1024;

/// How long a process may take to answer (a reload compiles components).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// One process's answer to a notice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// The socket it came through.
    #[serde(default)]
    pub socket: String,
    /// The process.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Running calls it stopped.
    #[serde(default)]
    pub stopped: usize,
    /// What it did.
    #[serde(default)]
    pub done: Option<String>,
    /// Why it could not apply the change.
    #[serde(default)]
    pub error: Option<String>,
}

/// Listens for notices on this process's socket until `stop`; the socket
/// file is removed when it ends.
pub fn listen(control: Arc<Control>, stop: CancellationToken) -> Result<PathBuf, ControlError> {
    let path = control
        .dir()
        .join(format!("serve-{}.sock", std::process::id()));
    let fail = |err: std::io::Error| ControlError::Store {
        path: path.display().to_string(),
        reason: err.to_string(),
    };
    let _ = std::fs::remove_file(&path);
    let (_dir, address) = addressable(&path).map_err(fail)?;
    let listener = UnixListener::bind(&address).map_err(fail)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    let owner = std::fs::metadata(control.dir()).map_err(fail)?.uid();
    let socket = path.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            let control = control.clone();
            tokio::spawn(async move {
                if let Err(err) = answer(stream, &control, owner).await {
                    tracing::warn!(target: "stockade::control", "control socket: {err}");
                }
            });
        }
        let _ = std::fs::remove_file(&socket);
    });
    Ok(path)
}

/// Reads one notice from `stream`, applies it, answers.
async fn answer(stream: UnixStream, control: &Control, owner: u32) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let reply = |answer: Answer| {
        let mut line = serde_json::to_string(&answer).unwrap_or_default();
        line.push('\n');
        line
    };
    let mut answer = Answer {
        socket: String::new(),
        pid: Some(std::process::id()),
        stopped: 0,
        done: None,
        error: None,
    };
    if uid != owner && uid != 0 {
        answer.error = Some(format!(
            "refused: uid {uid} is neither the control directory's owner (uid {owner}) nor root"
        ));
        return write.write_all(reply(answer).as_bytes()).await;
    }
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_NOTICE));
    tokio::time::timeout(ANSWER_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no notice sent"))??;
    match serde_json::from_str::<Notice>(&line) {
        Err(err) => answer.error = Some(format!("not a control notice: {err}")),
        Ok(mut notice) => {
            notice.by = format!("{} (uid {uid})", notice.by);
            match control.handle(&notice).await {
                Ok((stopped, done)) => {
                    answer.stopped = stopped;
                    answer.done = Some(done);
                }
                Err(err) => answer.error = Some(err),
            }
        }
    }
    write.write_all(reply(answer).as_bytes()).await
}

/// Sends `notice` to every process listening in `dir`; sockets nobody
/// listens on any more are removed.
pub async fn tell_all(dir: &Path, notice: &Notice) -> Vec<Answer> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut sockets: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("serve-") && n.ends_with(".sock"))
        })
        .collect();
    sockets.sort();
    let mut line = serde_json::to_string(notice).unwrap_or_default();
    line.push('\n');
    let mut answers = Vec::new();
    for socket in sockets {
        let name = socket
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let connected = match addressable(&socket) {
            Ok((_dir, address)) => UnixStream::connect(&address).await,
            Err(err) => Err(err),
        };
        let stream = match connected {
            Ok(stream) => stream,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                ) =>
            {
                // The process is gone.
                let _ = std::fs::remove_file(&socket);
                continue;
            }
            Err(err) => {
                answers.push(failed(name, err.to_string()));
                continue;
            }
        };
        let exchange = async {
            let (read, mut write) = stream.into_split();
            write.write_all(line.as_bytes()).await?;
            let mut reply = String::new();
            BufReader::new(read.take(MAX_NOTICE))
                .read_line(&mut reply)
                .await?;
            Ok::<_, std::io::Error>(reply)
        };
        let answer = match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
            Err(_) => failed(name, "no answer in time".into()),
            Ok(Err(err)) => failed(name, err.to_string()),
            Ok(Ok(reply)) => match serde_json::from_str::<Answer>(&reply) {
                Ok(mut answer) => {
                    answer.socket = name;
                    answer
                }
                Err(_) => failed(name, "an answer that is not JSON".into()),
            },
        };
        answers.push(answer);
    }
    answers
}

/// A socket address is at most 108 bytes: a longer `path` is reached
/// through an open descriptor of its directory (`/proc/self/fd/N/NAME`),
/// which must stay open while the address is used.
fn addressable(path: &Path) -> std::io::Result<(Option<std::fs::File>, PathBuf)> {
    use std::os::fd::AsRawFd;
    const ROOM: usize = 100;
    if path.as_os_str().len() < ROOM {
        return Ok((None, path.to_owned()));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok((None, path.to_owned()));
    };
    let dir = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    Ok((Some(dir), short))
}

fn failed(socket: String, error: String) -> Answer {
    Answer {
        socket,
        pid: None,
        stopped: 0,
        done: None,
        error: Some(error),
    }
}
