//! The shipping spool is the audit directory itself: a shipper reads the
//! chained files in order from its cursor (the next record number to
//! deliver, kept in `ship-NAME.cursor`), so a collector that is away for
//! an hour, or a restart, loses nothing that the audit kept.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::audit::cursor;
use crate::audit::file::{self, LogFile};

/// Most bytes read from a file at once.
const READ_BYTES: u64 = 1 << 20;

/// One record to deliver.
#[derive(Debug, Clone)]
pub struct Spooled {
    /// Its number in the chain.
    pub seq: u64,
    /// The line as the audit file holds it (the collector gets it whole,
    /// chain fields included).
    pub line: String,
}

/// Records read but not yet delivered, and where reading stopped.
pub struct Batch {
    /// The records, in chain order.
    pub records: Vec<Spooled>,
    file: PathBuf,
    end: u64,
}

/// Reads the audit directory from a cursor.
pub struct SpoolReader {
    dir: PathBuf,
    name: &'static str,
    /// The file being read and the offset reached in it.
    at: Option<(LogFile, u64)>,
    /// The next record to deliver.
    next_seq: u64,
}

impl SpoolReader {
    /// A reader for shipper `name`, from its saved cursor (or the first
    /// record when it has none).
    pub fn open(dir: &Path, name: &'static str) -> Self {
        Self {
            dir: dir.to_owned(),
            name,
            at: None,
            next_seq: cursor::read(dir, name),
        }
    }

    /// The next record number to deliver.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Up to `max` records from the cursor on; empty when there are none
    /// yet. Reading again without [`SpoolReader::commit`] returns the same.
    pub fn read(&mut self, max: usize) -> std::io::Result<Batch> {
        loop {
            if self.at.is_none() {
                match self.start_file()? {
                    Some(log) => self.at = Some((log, 0)),
                    None => return Ok(self.empty()),
                }
            }
            let (log, offset) = self.at.clone().expect("a file to read");
            let batch = self.read_from(&log, offset, max)?;
            if !batch.records.is_empty() {
                return Ok(batch);
            }
            // Nothing more here: move on once a newer file exists.
            let newer = file::list_files(&self.dir)?
                .into_iter()
                .find(|f| f.first_seq > log.first_seq);
            match newer {
                // The old file is finished once a newer one exists; read it
                // once more for what was written just before the switch.
                Some(next) => {
                    let last = self.read_from(&log, offset, max)?;
                    if !last.records.is_empty() {
                        return Ok(last);
                    }
                    self.at = Some((next, 0));
                }
                None => {
                    self.at = Some((log, batch.end));
                    return Ok(batch);
                }
            }
        }
    }

    fn empty(&self) -> Batch {
        Batch {
            records: Vec::new(),
            file: PathBuf::new(),
            end: 0,
        }
    }

    /// The file holding the cursor's record: the last one starting at or
    /// before it (or the oldest, if retention removed it).
    fn start_file(&self) -> std::io::Result<Option<LogFile>> {
        let files = file::list_files(&self.dir)?;
        let holding = files
            .iter()
            .rev()
            .find(|f| f.first_seq <= self.next_seq)
            .or(files.first());
        Ok(holding.cloned())
    }

    fn read_from(&self, log: &LogFile, offset: u64, max: usize) -> std::io::Result<Batch> {
        let mut handle = File::open(&log.path)?;
        handle.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        handle.take(READ_BYTES).read_to_end(&mut bytes)?;
        let mut records = Vec::new();
        let mut end = offset;
        // Only whole lines: a line still being written has no newline yet.
        let mut rest = bytes.as_slice();
        while let Some(newline) = rest.iter().position(|b| *b == b'\n') {
            if records.len() == max {
                break;
            }
            let line = &rest[..newline];
            rest = &rest[newline + 1..];
            end += newline as u64 + 1;
            if let Some(seq) = file::record_seq(line)
                && seq >= self.next_seq
            {
                records.push(Spooled {
                    seq,
                    line: String::from_utf8_lossy(line).into_owned(),
                });
            }
        }
        Ok(Batch {
            records,
            file: log.path.clone(),
            end,
        })
    }

    /// Marks `batch` delivered and saves the cursor.
    pub fn commit(&mut self, batch: &Batch) -> std::io::Result<()> {
        let Some(last) = batch.records.last() else {
            return Ok(());
        };
        if let Some((log, offset)) = &mut self.at
            && log.path == batch.file
        {
            *offset = batch.end;
        }
        self.next_seq = last.seq + 1;
        cursor::write(&self.dir, self.name, self.next_seq)
    }
}
