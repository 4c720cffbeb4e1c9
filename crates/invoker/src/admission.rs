//! Admission control: reserved concurrency per function and an account-wide cap.
//!
//! Lambda's model: a function with reserved concurrency R may run at most R at once,
//! and that capacity is set aside for it; every other function shares what is left of
//! the account limit. A request over either cap is throttled at once (sync: 429).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use nimbus_dispatch::ThrottleReason;

#[derive(Default)]
struct State {
    in_flight: HashMap<String, u32>,
    unreserved_in_flight: u32,
    reserved: HashMap<String, u32>,
    reserved_total: u32,
}

/// Counts executions in flight. Cheap to clone.
#[derive(Clone)]
pub struct Admission {
    state: Arc<Mutex<State>>,
    account_limit: u32,
}

/// Held for the length of one execution; releases its slot on drop.
pub struct Permit {
    state: Arc<Mutex<State>>,
    function: String,
    reserved: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap();
        if let Some(n) = st.in_flight.get_mut(&self.function) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.in_flight.remove(&self.function);
            }
        }
        if !self.reserved {
            st.unreserved_in_flight = st.unreserved_in_flight.saturating_sub(1);
        }
    }
}

impl Admission {
    pub fn new(account_limit: u32) -> Self {
        Self {
            state: Arc::default(),
            account_limit,
        }
    }

    pub fn account_limit(&self) -> u32 {
        self.account_limit
    }

    /// Record a function's reserved concurrency (`None` to clear it).
    pub fn set_reserved(&self, function: &str, reserved: Option<u32>) {
        let mut st = self.state.lock().unwrap();
        match reserved {
            Some(r) => {
                st.reserved.insert(function.to_string(), r);
            }
            None => {
                st.reserved.remove(function);
            }
        }
        st.reserved_total = st.reserved.values().sum();
    }

    /// What is left for functions without a reservation.
    pub fn unreserved_limit(&self) -> u32 {
        let st = self.state.lock().unwrap();
        self.account_limit.saturating_sub(st.reserved_total)
    }

    pub fn in_flight(&self, function: &str) -> u32 {
        self.state
            .lock()
            .unwrap()
            .in_flight
            .get(function)
            .copied()
            .unwrap_or(0)
    }

    pub fn try_acquire(
        &self,
        function: &str,
        reserved: Option<u32>,
    ) -> Result<Permit, ThrottleReason> {
        let mut st = self.state.lock().unwrap();
        let current = st.in_flight.get(function).copied().unwrap_or(0);
        match reserved {
            Some(r) => {
                if current >= r {
                    return Err(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded);
                }
            }
            None => {
                let limit = self.account_limit.saturating_sub(st.reserved_total);
                if st.unreserved_in_flight >= limit {
                    return Err(ThrottleReason::ConcurrentInvocationLimitExceeded);
                }
                st.unreserved_in_flight += 1;
            }
        }
        *st.in_flight.entry(function.to_string()).or_insert(0) += 1;
        Ok(Permit {
            state: self.state.clone(),
            function: function.to_string(),
            reserved: reserved.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_caps_and_releases() {
        let a = Admission::new(10);
        a.set_reserved("f", Some(2));
        let p1 = a.try_acquire("f", Some(2)).unwrap();
        let _p2 = a.try_acquire("f", Some(2)).unwrap();
        assert_eq!(
            a.try_acquire("f", Some(2)).err(),
            Some(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded)
        );
        drop(p1);
        assert!(a.try_acquire("f", Some(2)).is_ok());
    }

    #[test]
    fn zero_reserved_disables_function() {
        let a = Admission::new(10);
        assert!(a.try_acquire("f", Some(0)).is_err());
    }

    #[test]
    fn reservations_shrink_the_shared_pool() {
        let a = Admission::new(3);
        a.set_reserved("r", Some(2));
        assert_eq!(a.unreserved_limit(), 1);
        let _g = a.try_acquire("g", None).unwrap();
        assert_eq!(
            a.try_acquire("h", None).err(),
            Some(ThrottleReason::ConcurrentInvocationLimitExceeded)
        );
        // The reserved function still has its own capacity.
        assert!(a.try_acquire("r", Some(2)).is_ok());
        assert_eq!(a.in_flight("g"), 1);
    }
}
