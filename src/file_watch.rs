//! Watching the desired-state file. Editors and orchestrators replace files in many ways: an atomic save (write a
//! temporary file, rename it over), truncate-and-write, delete-and-recreate, and Kubernetes' ConfigMap volumes,
//! where `desired.yaml -> ..data/desired.yaml` and `..data -> ..2026_11_28_...` is swapped by renaming a new
//! `..data` symlink over the old one. A watch on the file itself loses track after a rename or a delete, and the
//! ConfigMap swap never touches the file's own name; so the watch is on the file's DIRECTORY (and on the directory
//! the file resolves to, when it is a symlink elsewhere), any event there wakes the loader, a short debounce lets
//! the writer finish, and the content's sha256 tells a real change from noise.
//!
//! Missed events are covered by a slow poll (`POLL_INTERVAL`), which costs one read and one digest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::desired::{self, DesiredState};
use crate::error::Error;

/// Quiet time after the last event before the file is read: long enough for an editor's write-rename sequence or
/// a ConfigMap swap to complete, short enough that an edit reaches AWS well within a second.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// A file written continuously is still read this long after the first event.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(2);
/// The file is re-read this often even without events (network filesystems, an overflowed inotify queue).
pub const POLL_INTERVAL: Duration = Duration::from_secs(60);
/// While the file's directory does not exist (a volume not mounted yet, a fresh machine), it is looked for this
/// often, and watched once it appears.
pub const MISSING_DIR_RETRY: Duration = Duration::from_secs(2);

/// Wakes when the desired-state file may have changed.
pub struct FileWatch {
    path: PathBuf,
    watcher: RecommendedWatcher,
    events: mpsc::Receiver<()>,
    /// The directory the file resolves to, when it differs from its own directory (a symlink elsewhere).
    target_dir: Option<PathBuf>,
    /// An event seen and its debounce under way: (quiet until, read at the latest). Kept here, not in the
    /// future, so `changed` is cancel-safe: the main loop's `select!` drops it whenever another arm fires
    /// (the watchdog does ten times a second), and a debounce must survive that.
    debounce: Option<(Instant, Instant)>,
    /// When the slow poll reads the file without an event.
    next_poll: Instant,
    /// The file's directory is watched (false while it does not exist).
    dir_watched: bool,
}

impl FileWatch {
    /// Watch `path`'s directory; the file itself need not exist yet.
    pub fn new(path: &Path) -> Result<FileWatch, Error> {
        // A capacity of one with try_send: a pending wake-up already covers any later event.
        let (tx, events) = mpsc::channel(1);
        let watcher =
            notify::recommended_watcher(move |event: notify::Result<Event>| match event {
                Ok(event) if is_noise(&event.kind) => {}
                Ok(_) => {
                    let _ = tx.try_send(());
                }
                Err(e) => {
                    warn!(error = %e, "file watch error; the file is re-read");
                    let _ = tx.try_send(());
                }
            })
            .map_err(|e| watch_error(path, e))?;
        let mut watch = FileWatch {
            path: path.to_path_buf(),
            watcher,
            events,
            target_dir: None,
            debounce: None,
            next_poll: Instant::now() + POLL_INTERVAL,
            dir_watched: false,
        };
        let dir = directory_of(path);
        if dir.is_dir() {
            watch
                .watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .map_err(|e| watch_error(&dir, e))?;
            watch.dir_watched = true;
        } else {
            // Live and not ready until the file appears: a missing directory is waited for like a missing file.
            warn!(dir = %dir.display(), "the desired state's directory does not exist yet; looking for it every {}s",
                MISSING_DIR_RETRY.as_secs());
            watch.next_poll = Instant::now() + MISSING_DIR_RETRY;
        }
        watch.follow_symlink();
        Ok(watch)
    }

    /// When the file is a symlink to another directory, watch that one too (re-checked after every change: a
    /// ConfigMap swap moves the target to a new directory).
    pub fn follow_symlink(&mut self) {
        let own = std::fs::canonicalize(directory_of(&self.path)).ok();
        let target = std::fs::canonicalize(&self.path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|t| Some(t) != own.as_ref());
        if target == self.target_dir {
            return;
        }
        if let Some(old) = self.target_dir.take() {
            // It may be gone already (the old ConfigMap generation is deleted after the swap).
            let _ = self.watcher.unwatch(&old);
        }
        if let Some(dir) = target {
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    debug!(dir = %dir.display(), "also watching the symlink target's directory");
                    self.target_dir = Some(dir);
                }
                Err(e) => {
                    debug!(dir = %dir.display(), error = %e, "cannot watch the symlink target")
                }
            }
        }
    }

    /// Resolves once a burst of events has been quiet for `DEBOUNCE` (at most `DEBOUNCE_MAX` after it began), or
    /// after `POLL_INTERVAL` without events.
    pub async fn changed(&mut self) {
        loop {
            match self.debounce {
                None => match tokio::time::timeout_at(self.next_poll, self.events.recv()).await {
                    Ok(Some(())) => {
                        let now = Instant::now();
                        self.debounce = Some((now + DEBOUNCE, now + DEBOUNCE_MAX));
                    }
                    // The watcher is gone (it lives as long as `self`, so never): only the poll is left.
                    Ok(None) => {
                        tokio::time::sleep_until(self.next_poll).await;
                        return self.woke();
                    }
                    Err(_) => return self.woke(),
                },
                Some((quiet_until, deadline)) => {
                    match tokio::time::timeout_at(quiet_until.min(deadline), self.events.recv())
                        .await
                    {
                        Ok(Some(())) if Instant::now() < deadline => {
                            self.debounce = Some((Instant::now() + DEBOUNCE, deadline));
                        }
                        _ => return self.woke(),
                    }
                }
            }
        }
    }

    /// A wake-up is delivered: the next one needs a new event or a whole poll interval (or, while the directory
    /// is missing, the next look for it, which also watches it once it is there).
    fn woke(&mut self) {
        self.debounce = None;
        if !self.dir_watched {
            let dir = directory_of(&self.path);
            if dir.is_dir()
                && self
                    .watcher
                    .watch(&dir, RecursiveMode::NonRecursive)
                    .is_ok()
            {
                debug!(dir = %dir.display(), "the desired state's directory appeared: watching it");
                self.dir_watched = true;
                self.follow_symlink();
            }
        }
        let interval = if self.dir_watched {
            POLL_INTERVAL
        } else {
            MISSING_DIR_RETRY
        };
        self.next_poll = Instant::now() + interval;
    }
}

/// Our own reads open the file; opening, reading and closing without writing change nothing.
fn is_noise(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
        EventKind::Access(_) => true,
        _ => false,
    }
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn watch_error(path: &Path, error: notify::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!("cannot watch: {error}")),
    }
}

/// How long apart the two reads of a changed file are: a file is accepted only when two reads this far apart
/// see the same bytes (size, modification time, sha256), so a half-written file (`cat > file`, an upload, a tool
/// that truncates and then writes) is never taken for the desired state.
pub const STABLE_GAP: Duration = Duration::from_millis(200);

/// What a (re)load found.
#[derive(Debug)]
pub enum Load {
    /// The content has the digest of the last accepted load: nothing to do.
    Unchanged,
    /// New bytes, read once: call [`Loader::confirm`] after [`STABLE_GAP`].
    Pending,
    Valid {
        state: DesiredState,
        sha256: String,
    },
    /// Parsed, with problems (`Error::Invalid`, each problem at FILE:LINE:COLUMN).
    Invalid {
        error: Error,
        sha256: String,
    },
    /// Missing or unreadable.
    Unreadable(Error),
}

/// Reads the desired-state file, tells whether its content changed since the last load, and accepts a change only
/// once two reads `STABLE_GAP` apart agree. The same reader (`desired::read`) as every command.
#[derive(Debug)]
pub struct Loader {
    path: PathBuf,
    last_sha256: Option<String>,
    /// The first read of a change, waiting to be confirmed.
    pending: Option<(desired::Snapshot, bool)>,
}

impl Loader {
    pub fn new(path: &Path) -> Loader {
        Loader {
            path: path.to_path_buf(),
            last_sha256: None,
            pending: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// First read after an event (or `force`, for SIGHUP): `Pending` when there is something to confirm.
    pub fn observe(&mut self, force: bool) -> Load {
        match desired::read(&self.path) {
            Ok(snapshot) => {
                if !force && self.last_sha256.as_deref() == Some(snapshot.sha256.as_str()) {
                    self.pending = None;
                    return Load::Unchanged;
                }
                let force = force || self.pending.as_ref().is_some_and(|(_, f)| *f);
                self.pending = Some((snapshot, force));
                Load::Pending
            }
            Err(e) => self.unreadable(e),
        }
    }

    /// The second read: the change is accepted when it saw the same bytes as the first; otherwise the file is
    /// still being written (`Pending` again, with this read as the new first one).
    pub fn confirm(&mut self) -> Load {
        let Some((first, force)) = self.pending.take() else {
            return Load::Unchanged;
        };
        let second = match desired::read(&self.path) {
            Ok(s) => s,
            Err(e) => return self.unreadable(e),
        };
        if !second.same_as(&first) {
            debug!(file = %self.path.display(), "the desired-state file changed between two reads: still being written");
            self.pending = Some((second, force));
            return Load::Pending;
        }
        if !force && self.last_sha256.as_deref() == Some(second.sha256.as_str()) {
            return Load::Unchanged;
        }
        self.last_sha256 = Some(second.sha256.clone());
        match desired::parse_str(&second.text, &self.path) {
            Ok(deployments) => Load::Valid {
                state: DesiredState {
                    path: self.path.clone(),
                    deployments,
                },
                sha256: second.sha256,
            },
            Err(invalid) => Load::Invalid {
                error: invalid.into(),
                sha256: second.sha256,
            },
        }
    }

    /// Both reads in one call, `STABLE_GAP` apart (and again while the file keeps changing, up to `DEBOUNCE_MAX`
    /// more): for the daemon's start.
    pub async fn load_stable(&mut self, force: bool) -> Load {
        let deadline = Instant::now() + DEBOUNCE_MAX;
        match self.observe(force) {
            Load::Pending => {}
            other => return other,
        }
        loop {
            tokio::time::sleep(STABLE_GAP).await;
            match self.confirm() {
                Load::Pending if Instant::now() < deadline => continue,
                other => return other,
            }
        }
    }

    fn unreadable(&mut self, e: Error) -> Load {
        // Re-read once it is back, even with the same content (the last good state is unaffected).
        self.last_sha256 = None;
        self.pending = None;
        Load::Unreadable(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's main loop polls `changed` in a `select!` with other arms (the watchdog fires every few
    /// hundred milliseconds): a debounce cancelled by them must still end in a wake-up (found when the
    /// watchdog moved into the loop: every edit was lost).
    #[tokio::test]
    async fn a_debounce_survives_being_cancelled_by_other_select_arms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desired.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let mut watch = FileWatch::new(&path).unwrap();
        std::fs::write(&path, "a: 2\n").unwrap();
        let started = std::time::Instant::now();
        loop {
            tokio::select! {
                () = watch.changed() => break,
                () = tokio::time::sleep(DEBOUNCE / 4) => {}
            }
            assert!(
                started.elapsed() < DEBOUNCE_MAX * 2,
                "the edit's wake-up was lost to cancellations"
            );
        }
        assert!(started.elapsed() >= DEBOUNCE, "still debounced");
    }

    /// A directory that does not exist yet (a volume not mounted, a fresh machine) is waited for, not an error;
    /// once it appears it is watched, and an edit there wakes the loader.
    #[tokio::test]
    async fn a_missing_directory_is_waited_for_then_watched() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc-stacksetd");
        let path = dir.join("desired.yaml");
        let mut watch = FileWatch::new(&path).expect("a missing directory is no error");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(&path, "a: 1\n").unwrap();
        tokio::time::timeout(MISSING_DIR_RETRY * 3, watch.changed())
            .await
            .expect("woken once the directory is there");
        assert!(watch.dir_watched, "watched once it appeared");
        std::fs::write(&path, "a: 2\n").unwrap();
        tokio::time::timeout(DEBOUNCE_MAX * 2, watch.changed())
            .await
            .expect("an edit in the new directory wakes it, well before the slow poll");
    }

    /// Both reads, as the daemon makes them.
    fn load(loader: &mut Loader, force: bool) -> Load {
        match loader.observe(force) {
            Load::Pending => loader.confirm(),
            other => other,
        }
    }

    #[test]
    fn loads_are_skipped_when_the_content_is_unchanged_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desired.yaml");
        let mut loader = Loader::new(&path);
        assert!(matches!(load(&mut loader, false), Load::Unreadable(_)));
        std::fs::write(&path, "not: [valid").unwrap();
        let Load::Invalid { error, .. } = load(&mut loader, false) else {
            panic!("a broken file is invalid");
        };
        assert!(
            error
                .to_string()
                .contains("desired.yaml:2:1: YAML syntax error"),
            "file:line:column in {error}"
        );
        assert!(matches!(load(&mut loader, false), Load::Unchanged));
        assert!(matches!(load(&mut loader, true), Load::Invalid { .. }));
        std::fs::write(&path, "").unwrap();
        assert!(matches!(load(&mut loader, false), Load::Invalid { .. }));
    }

    #[test]
    fn a_file_written_between_the_two_reads_is_not_accepted_until_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desired.yaml");
        std::fs::write(&path, "first: part\n").unwrap();
        let mut loader = Loader::new(&path);
        assert!(matches!(loader.observe(false), Load::Pending));
        // The writer appends the rest before the second read.
        std::fs::write(&path, "first: part\nsecond: part\n").unwrap();
        assert!(
            matches!(loader.confirm(), Load::Pending),
            "changed between the reads: not accepted"
        );
        assert!(
            matches!(loader.confirm(), Load::Invalid { .. }),
            "settled: now read and judged"
        );
    }

    #[test]
    fn own_reads_are_noise_writes_are_not() {
        use notify::event::{CreateKind, ModifyKind};
        assert!(is_noise(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(is_noise(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!is_noise(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!is_noise(&EventKind::Create(CreateKind::File)));
        assert!(!is_noise(&EventKind::Modify(ModifyKind::Any)));
    }

    #[tokio::test]
    async fn a_rename_over_the_file_wakes_the_watch_after_the_debounce() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desired.yaml");
        std::fs::write(&path, "a").unwrap();
        let mut watch = FileWatch::new(&path).unwrap();
        let started = Instant::now();
        let tmp = dir.path().join(".desired.yaml.swp");
        std::fs::write(&tmp, "b").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("the rename is seen");
        assert!(started.elapsed() >= DEBOUNCE, "debounced");
    }
}
