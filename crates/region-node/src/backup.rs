//! `region-node backup`, `restore` and `export`.
//!
//! Backup and export read a running node through `GET /v1/admin/log` (the
//! node holds its sled directory, so nothing else may open it): they fix
//! the node's durable seq when the first page arrives and fetch up to it,
//! so a backup is consistent at that seq however many orders the node
//! takes meanwhile. Restore writes a backup into a fresh data directory;
//! starting a node on it replays to the state the original had at that seq.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use protocol::codec::{self, LOG_SCHEMA_VERSION};
use region_node::auth::Role;
use region_node::config::Config;
use region_node::http::log::{
    DISTRICT_HEADER, DURABLE_SEQ_HEADER, MAX_LOG_PAGE_RECORDS, SCHEMA_HEADER,
};
use region_node::store::EventLog;
use serde::{Deserialize, Serialize};
use storage::archive::{self, Archive, ArchiveWriter};

/// `kind` in the manifest of a region node's log backup.
const LOG_BACKUP_KIND: &str = "region-node-log";
/// The records file inside a log backup.
const RECORDS_FILE: &str = "log-records.bin";
/// Records written per sled batch while restoring (bounds memory; the one
/// sync comes at the end).
const RESTORE_CHUNK_RECORDS: usize = 10_000;
/// Lifetime of a token minted from the config for one backup or export.
const CLI_TOKEN_TTL_SECS: u64 = 3_600;
/// Per page request; a page is at most MAX_LOG_PAGE_RECORDS records.
const PAGE_TIMEOUT_SECS: u64 = 60;
/// The directory in the data dir that holds the log (`open_district`).
const LOG_DIR: &str = "log";

/// Where the node is and how to be its admin.
#[derive(clap::Args)]
pub struct Remote {
    /// The node's config: its `http_addr` is the default URL, and its
    /// private key (development configs) can mint the admin token.
    #[arg(long, env = "LARDER_CONFIG")]
    config: Option<PathBuf>,
    /// The node's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "LARDER_NODE_URL")]
    url: Option<String>,
    /// An admin token for the node.
    #[arg(long, env = "LARDER_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// `manifest.json` of a log backup, besides the archive's own fields.
#[derive(Debug, Serialize, Deserialize)]
struct LogMeta {
    district_id: String,
    /// 1, or 0 for an empty log.
    first_seq: u64,
    /// The node's durable seq when the backup started.
    last_seq: u64,
    record_count: u64,
    /// The node's `protocol::codec::LOG_SCHEMA_VERSION`.
    log_schema_version: u16,
    created_at: String,
    source: String,
}

/// The node and the seq a fetch stops at.
struct Source {
    district_id: String,
    durable_seq: u64,
    log_schema_version: u16,
}

/// `region-node backup --to DIR`.
pub fn backup(to: &Path, remote: Remote) -> anyhow::Result<()> {
    let (url, token) = remote.resolve()?;
    let mut writer = ArchiveWriter::create(to)?;
    let mut file = writer.file(RECORDS_FILE)?;
    let source = runtime()?.block_on(fetch(&url, &token, 0, |seq, record| {
        decoded(seq, record)?;
        Ok(file.push(&seq.to_be_bytes(), record)?)
    }))?;
    let count = file.records();
    writer.add(file)?;
    let meta = LogMeta {
        district_id: source.district_id,
        first_seq: u64::from(count > 0),
        last_seq: source.durable_seq,
        record_count: count,
        log_schema_version: source.log_schema_version,
        created_at: chrono::Utc::now().to_rfc3339(),
        source: url,
    };
    let manifest = writer.finish(LOG_BACKUP_KIND, meta)?;
    // The command's report, for the operator.
    println!(
        "backed up {} events of {} (seq {}..={}) to {}",
        manifest.meta.record_count,
        manifest.meta.district_id,
        manifest.meta.first_seq,
        manifest.meta.last_seq,
        to.display()
    );
    Ok(())
}

/// `region-node export --since SEQ`: one JSON envelope per line.
pub fn export(since: u64, out: Option<&Path>, remote: Remote) -> anyhow::Result<()> {
    let (url, token) = remote.resolve()?;
    let Some(out) = out else {
        let stdout = std::io::BufWriter::new(std::io::stdout().lock());
        return export_to(stdout, &url, &token, since);
    };
    // Written whole or not at all: a failed export leaves no file behind.
    let partial = out.with_extension("partial");
    let file =
        std::fs::File::create(&partial).with_context(|| format!("create {}", partial.display()))?;
    let written = export_to(std::io::BufWriter::new(file), &url, &token, since)
        .and_then(|()| Ok(std::fs::File::open(&partial)?.sync_all()?))
        .and_then(|()| Ok(std::fs::rename(&partial, out)?));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written?;
    Ok(archive::sync_dir(archive::parent_of(out))?)
}

/// Writes the events after `since` to `sink` as JSON lines, and flushes it.
fn export_to(mut sink: impl Write, url: &str, token: &str, since: u64) -> anyhow::Result<()> {
    let mut count = 0u64;
    let source = runtime()?.block_on(fetch(url, token, since, |seq, record| {
        serde_json::to_writer(&mut sink, &decoded(seq, record)?)?;
        sink.write_all(b"\n")?;
        count += 1;
        Ok(())
    }))?;
    sink.flush()?;
    // A report for the operator on stderr: stdout may be the export itself.
    eprintln!(
        "exported {count} events of {} after seq {since} (up to seq {})",
        source.district_id, source.durable_seq
    );
    Ok(())
}

/// `region-node restore --from DIR` into an empty data directory.
pub fn restore(
    from: &Path,
    config: Option<&Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let cfg = config.map(Config::load).transpose()?;
    let data_dir = data_dir
        .or_else(|| cfg.as_ref().map(|c| c.data_dir.clone()))
        .context("name the target with --data-dir or --config")?;
    if !archive::is_empty_or_absent(&data_dir)? {
        bail!(
            "{} is not empty: restore only into a new or empty data directory",
            data_dir.display()
        );
    }
    let backup = Archive::<LogMeta>::open(from, LOG_BACKUP_KIND)?;
    let meta = &backup.manifest.meta;
    if let Some(cfg) = &cfg {
        if *cfg.district_id != meta.district_id {
            bail!(
                "the backup is of district {}, the config serves {}",
                meta.district_id,
                cfg.district_id
            );
        }
    }
    if meta.log_schema_version > LOG_SCHEMA_VERSION {
        bail!(
            "the backup's log schema is v{}; this build reads up to v{LOG_SCHEMA_VERSION}",
            meta.log_schema_version
        );
    }
    let entry = backup.entry(RECORDS_FILE)?;
    if entry.records != meta.record_count || meta.last_seq != meta.record_count {
        bail!(
            "the manifest is inconsistent: {} records in {RECORDS_FILE}, record_count {}, last_seq {}",
            entry.records,
            meta.record_count,
            meta.last_seq
        );
    }
    std::fs::create_dir_all(&data_dir)?;
    // Restored under a temporary name and renamed once synced, so a node
    // never starts on half a restore.
    let partial = data_dir.join(format!("{LOG_DIR}.restoring"));
    let written = write_log(&backup, &partial).inspect_err(|_| {
        // Leave the target as empty as it was, so the restore can be rerun.
        let _ = std::fs::remove_dir_all(&partial);
    })?;
    std::fs::rename(&partial, data_dir.join(LOG_DIR))?;
    archive::sync_dir(&data_dir)?;
    archive::sync_dir(archive::parent_of(&data_dir))?;
    println!(
        "restored {written} events of {} into {}",
        meta.district_id,
        data_dir.display()
    );
    Ok(())
}

/// Writes every record of `backup` into a new log at `dir`, with one sync.
fn write_log(backup: &Archive<LogMeta>, dir: &Path) -> anyhow::Result<u64> {
    let log = EventLog::open(dir)?;
    let mut frames = backup.frames(RECORDS_FILE)?;
    let mut chunk = Vec::with_capacity(RESTORE_CHUNK_RECORDS);
    let mut written = 0u64;
    loop {
        let frame = frames.next_frame()?;
        let end = frame.is_none();
        if let Some((key, record)) = frame {
            let seq = seq_of(&key)?;
            chunk.push((seq, record));
        }
        if chunk.len() >= RESTORE_CHUNK_RECORDS || (end && !chunk.is_empty()) {
            log.restore_records(&chunk)?;
            written += chunk.len() as u64;
            chunk.clear();
        }
        if end {
            break;
        }
    }
    if written != backup.manifest.meta.record_count {
        bail!(
            "{RECORDS_FILE} holds {written} records, the manifest says {}",
            backup.manifest.meta.record_count
        );
    }
    runtime()?.block_on(log.sync())?;
    Ok(written)
}

/// A record's key: its seq, 8 bytes big-endian.
fn seq_of(key: &[u8]) -> anyhow::Result<u64> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| anyhow::anyhow!("a record key of {} bytes, not a seq", key.len()))
}

/// Decodes a fetched record, checking it is the event its key says.
fn decoded(seq: u64, record: &[u8]) -> anyhow::Result<protocol::EventEnvelope> {
    let env = codec::decode_log_record(record)
        .with_context(|| format!("the node sent an undecodable record at seq {seq}"))?;
    if env.seq != seq {
        bail!("the node sent event {} under seq {seq}", env.seq);
    }
    Ok(env)
}

/// Calls `each` for every record after `after`, in order, up to the node's
/// durable seq when the first page was read.
async fn fetch(
    url: &str,
    token: &str,
    after: u64,
    mut each: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<Source> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(PAGE_TIMEOUT_SECS))
        .build()?;
    let (source, mut body) = fetch_page(&client, url, token, after, MAX_LOG_PAGE_RECORDS).await?;
    let mut next = after;
    loop {
        let before = next;
        for (key, record) in archive::frames(&body)? {
            let seq = seq_of(&key)?;
            if seq > source.durable_seq {
                break;
            }
            if seq != next + 1 {
                bail!("the node sent seq {seq} after {next}");
            }
            each(seq, &record)?;
            next = seq;
        }
        if next >= source.durable_seq {
            return Ok(source);
        }
        if next == before {
            bail!(
                "the node sent nothing after seq {next} though its durable seq is {}",
                source.durable_seq
            );
        }
        // Never past the seq the backup is consistent at.
        let left = usize::try_from(source.durable_seq - next).unwrap_or(usize::MAX);
        let limit = left.min(MAX_LOG_PAGE_RECORDS);
        body = fetch_page(&client, url, token, next, limit).await?.1;
    }
}

/// One page of `GET /v1/admin/log`, and what its headers say.
async fn fetch_page(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    after: u64,
    limit: usize,
) -> anyhow::Result<(Source, Vec<u8>)> {
    let page = format!("{url}/v1/admin/log?after={after}&limit={limit}");
    let resp = client
        .get(&page)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("GET {page}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        bail!("GET {page}: {status}: {body}");
    }
    let header = |name: &reqwest::header::HeaderName| {
        resp.headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .with_context(|| format!("GET {page}: no {name} header"))
    };
    let source = Source {
        district_id: header(&DISTRICT_HEADER)?,
        durable_seq: header(&DURABLE_SEQ_HEADER)?.parse()?,
        log_schema_version: header(&SCHEMA_HEADER)?.parse()?,
    };
    let body = resp.bytes().await.with_context(|| format!("GET {page}"))?;
    Ok((source, body.to_vec()))
}

impl Remote {
    /// The node's URL and an admin token, from the flags or the config.
    fn resolve(self) -> anyhow::Result<(String, String)> {
        let cfg = self.config.as_deref().map(Config::load).transpose()?;
        let url = match (self.url, &cfg) {
            (Some(u), _) => u,
            (None, Some(c)) => {
                let mut addr = c.http_addr;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}")
            }
            (None, None) => bail!("name the node with --url or --config"),
        };
        let token = match (self.token, &cfg) {
            (Some(t), _) => t,
            (None, Some(c)) => crate::mint(
                c,
                Role::Admin,
                "backup-cli".into(),
                CLI_TOKEN_TTL_SECS,
                None,
                None,
            )
            .context("no --token or LARDER_ADMIN_TOKEN, and minting one from the config failed")?,
            (None, None) => bail!("pass an admin token with --token or LARDER_ADMIN_TOKEN"),
        };
        Ok((url.trim_end_matches('/').to_string(), token))
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
