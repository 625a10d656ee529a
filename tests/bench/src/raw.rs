//! A raw JSON-RPC client over stdio: blocking writes and reads of one
//! line each, with no protocol library, so that what it measures is the
//! server and not the client. It completes the legacy handshake, then
//! sends `tools/call` lines and checks every answer.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::stats::Samples;
use crate::stdio::{ServerCommand, process_cpu, process_memory};
use crate::{TRANSFORM_INPUT, TRANSFORM_OUTPUT};

/// Rounds in which every session takes its turn.
const ROUNDS: usize = 10;

/// One server process and the client's ends of its pipes.
pub struct RawSession {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next_id: u64,
    line: String,
}

impl RawSession {
    /// Spawns the server and completes the `initialize` handshake.
    pub fn start(command: &ServerCommand) -> Result<Self> {
        let mut child = Command::new(&command.program)
            .args(&command.args)
            .env("STOCKADE_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", command.program.display()))?;
        let input = child.stdin.take().context("no stdin pipe")?;
        let output = BufReader::new(child.stdout.take().context("no stdout pipe")?);
        let mut session = Self {
            child,
            input,
            output,
            next_id: 0,
            line: String::new(),
        };
        session.send(&json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": { "name": "raw-bench-client", "version": "1" },
            },
        }))?;
        let answer = session.receive()?;
        if answer.get("result").is_none() {
            bail!("{} refused initialize: {answer}", command.program.display());
        }
        session.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))?;
        Ok(session)
    }

    fn send(&mut self, message: &Value) -> Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        self.input.write_all(&line)?;
        Ok(())
    }

    /// Reads the next message.
    pub fn receive(&mut self) -> Result<Value> {
        self.line.clear();
        if self.output.read_line(&mut self.line)? == 0 {
            bail!("the server closed its output");
        }
        Ok(serde_json::from_str(&self.line)?)
    }

    /// Writes one `tools/call` of `name` with `arguments`.
    pub fn send_tool_call(&mut self, name: &str, arguments: &Value) -> Result<()> {
        self.next_id += 1;
        let call = json!({
            "jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
            "params": { "name": name, "arguments": arguments },
        });
        self.send(&call)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one `tools/call` of `transform`.
    fn send_call(&mut self) -> Result<()> {
        self.next_id += 1;
        // Written as text, as a client with its request already encoded.
        let line = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"tools/call\",\"params\":{{\"name\":\"transform\",\"arguments\":{{\"text\":\"{TRANSFORM_INPUT}\",\"op\":\"upper\"}}}}}}\n",
            self.next_id
        );
        self.input.write_all(line.as_bytes())?;
        Ok(())
    }

    /// Reads one answer and checks it is the transformed text.
    fn receive_call(&mut self) -> Result<()> {
        let answer = self.receive()?;
        let text = answer
            .pointer("/result/content/0/text")
            .and_then(Value::as_str);
        if text != Some(TRANSFORM_OUTPUT) {
            bail!("unexpected answer: {answer}");
        }
        Ok(())
    }

    /// Times `calls` sequential calls, appending to `timings`.
    fn sequential(&mut self, calls: usize, timings: &mut Vec<Duration>) -> Result<()> {
        for _ in 0..calls {
            let started = Instant::now();
            self.send_call()?;
            self.receive_call()?;
            timings.push(started.elapsed());
        }
        Ok(())
    }

    /// Runs `total` calls keeping `in_flight` outstanding; the time taken.
    fn pipelined(&mut self, in_flight: usize, total: usize) -> Result<Duration> {
        let started = Instant::now();
        let mut sent = 0;
        while sent < in_flight.min(total) {
            self.send_call()?;
            sent += 1;
        }
        for _ in 0..total {
            self.receive_call()?;
            if sent < total {
                self.send_call()?;
                sent += 1;
            }
        }
        Ok(started.elapsed())
    }

    /// The server's resident set size now, in bytes.
    pub fn rss(&self) -> Result<u64> {
        process_memory(self.child.id(), "VmRSS")
    }

    /// CPU time the server has used so far.
    fn cpu(&self) -> Result<Duration> {
        process_cpu(self.child.id())
    }

    /// Closes the server's input and waits for it to exit.
    pub fn close(self) -> Result<()> {
        let Self {
            mut child, input, ..
        } = self;
        drop(input);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                child.kill()?;
                bail!("the server did not exit within 10 s of its stdin closing");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

/// What sequential raw calls cost one server.
pub struct RawSequential {
    /// Round-trip time of each call.
    pub latency: Samples,
    /// Server CPU time per call, all its threads together.
    pub cpu_per_call: Duration,
}

/// Sequential calls on each session in alternating rounds, after `warmup`.
pub fn sequential(
    sessions: &mut [RawSession],
    warmup: usize,
    calls: usize,
) -> Result<Vec<RawSequential>> {
    let mut timings = vec![Vec::with_capacity(calls); sessions.len()];
    let mut cpu = vec![Duration::ZERO; sessions.len()];
    for session in sessions.iter_mut() {
        session.sequential(warmup, &mut Vec::new())?;
    }
    for round in 0..ROUNDS {
        let share = calls / ROUNDS + usize::from(round < calls % ROUNDS);
        for (i, session) in sessions.iter_mut().enumerate() {
            let before = session.cpu()?;
            session.sequential(share, &mut timings[i])?;
            cpu[i] += session.cpu()? - before;
        }
    }
    let calls = u32::try_from(calls)?;
    Ok(timings
        .into_iter()
        .zip(cpu)
        .map(|(t, cpu)| RawSequential {
            latency: Samples::new(t),
            cpu_per_call: cpu / calls,
        })
        .collect())
}

/// Calls per second on each session with `in_flight` outstanding.
pub fn pipelined(sessions: &mut [RawSession], in_flight: usize, total: usize) -> Result<Vec<f64>> {
    let mut elapsed = vec![Duration::ZERO; sessions.len()];
    for _ in 0..ROUNDS {
        for (i, session) in sessions.iter_mut().enumerate() {
            elapsed[i] += session.pipelined(in_flight, total / ROUNDS)?;
        }
    }
    let done = (total / ROUNDS * ROUNDS) as f64;
    Ok(elapsed
        .into_iter()
        .map(|e| done / e.as_secs_f64())
        .collect())
}
