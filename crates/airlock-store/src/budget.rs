//! Budgets as the control plane sees them: set a limit, list what each
//! period used, and reserve headroom in one atomic step that can never take
//! more than the limit (also with several writers at once), then settle the
//! reservation by its id. On SQLite these are the LLM gateway's own budgets
//! (a reservation is counted exactly like a model call's); on PostgreSQL,
//! the replicas' shared counters.

use crate::StoreError;
use airlock_types::TenantId;

/// A budget and what its current period used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetState {
    /// `org`, `team:NAME`, `agent:NAME`, `run:ID` or `key:ID`.
    pub scope: String,
    /// `day`, `month` or `total` (UTC).
    pub period: String,
    /// The limit, micro-USD.
    pub limit_micros: i64,
    /// Settled charges plus open reservations in the current period.
    pub used_micros: i64,
}

/// The outcome of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserve {
    /// Reserved: settle it by this id.
    Reserved {
        /// The reservation's id.
        id: i64,
        /// The budget after the reservation.
        budget: BudgetState,
    },
    /// Nothing reserved: the headroom of this budget is smaller.
    Exceeded(BudgetState),
    /// No budget with that scope.
    NoBudget,
}

/// Storage of budgets (see the module documentation).
pub trait BudgetStore {
    /// The tenant's budgets with their current use, by scope.
    fn budget_list(&self, tenant: &TenantId, now: i64) -> Result<Vec<BudgetState>, StoreError>;
    /// Create or change a budget (its use is kept). A backend that cannot
    /// keep `period` refuses it with [`StoreError::Control`].
    fn budget_put(
        &mut self,
        tenant: &TenantId,
        scope: &str,
        period: &str,
        limit_micros: i64,
    ) -> Result<(), StoreError>;
    /// Reserve `micros` of the budget of `scope` (and of `org`, when the
    /// tenant has one) in one atomic step.
    fn budget_reserve(
        &mut self,
        tenant: &TenantId,
        scope: &str,
        micros: i64,
        now: i64,
    ) -> Result<Reserve, StoreError>;
    /// Settle an open reservation: its charge becomes `actual`. Returns
    /// false when there is no such open reservation.
    fn budget_settle(
        &mut self,
        tenant: &TenantId,
        id: i64,
        actual: i64,
        now: i64,
    ) -> Result<bool, StoreError>;
}
