//! Runs started on this machine outside the API (`airlock run`, and so
//! `airlock demo`) are listed with the API's runs in the control store, so
//! `GET /v1/runs` and the dashboard show them too. Only the program name is
//! kept, as in the audit log: arguments may carry secrets. Listing is a
//! convenience beside the audit log (which records every run and fails the
//! run when it cannot): a run that cannot be listed still runs, with a
//! notice.

use crate::RuntimeError;
use crate::run::{Ended, EndedBy};
use airlock_store::{ControlStore, RunRow, RunState, SqliteStore};
use airlock_types::{RunContext, Timestamp};

/// Where a run is listed: the configured PostgreSQL, else the data
/// directory's SQLite, and this node's name.
#[derive(Debug)]
pub struct RunList {
    store: Box<dyn ControlStore>,
    node: String,
}

impl RunList {
    /// Open the control store of `home` under `store` settings.
    pub fn open(
        home: &crate::Home,
        store: &crate::settings::store::StoreSettings,
        node: &str,
    ) -> Result<RunList, RuntimeError> {
        let store: Box<dyn ControlStore> = match crate::audit::open_pg(store)? {
            Some(pg) => Box::new(pg),
            None => Box::new(SqliteStore::open(&home.db_path())?),
        };
        Ok(RunList {
            store,
            node: node.to_owned(),
        })
    }

    /// List `ctx`'s run as running `argv0`.
    pub fn started(&mut self, ctx: &RunContext, argv0: &str) -> Result<(), RuntimeError> {
        let row = RunRow {
            id: ctx.run.as_str().to_owned(),
            agent: ctx.agent.as_ref().map(|a| a.as_str().to_owned()),
            command: vec![argv0.to_owned()],
            node: self.node.clone(),
            state: RunState::Running,
            exit_code: None,
            started_at: Timestamp::now().as_micros(),
            ended_at: None,
        };
        Ok(self.store.run_insert(&ctx.tenant, &row)?)
    }

    /// Mark `ctx`'s run ended as `ended` says (failed when it did not end
    /// normally).
    pub fn ended(
        &mut self,
        ctx: &RunContext,
        ended: Result<&Ended, &RuntimeError>,
    ) -> Result<(), RuntimeError> {
        let (state, code) = match ended {
            Ok(e) if matches!(e.ended_by, EndedBy::Exit) => {
                (RunState::Exited, Some(i32::from(e.exit_code)))
            }
            Ok(e) => (RunState::Stopped, Some(i32::from(e.exit_code))),
            Err(_) => (RunState::Failed, None),
        };
        let now = Timestamp::now().as_micros();
        self.store
            .run_finish(&ctx.tenant, ctx.run.as_str(), state, code, now)?;
        Ok(())
    }
}
