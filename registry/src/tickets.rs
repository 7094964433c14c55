//! Identity tickets (`docs/security.md`): a logged-in user asks for a ticket for its
//! long-term key, and the registry signs "user NAME holds key K until T" with its own key.
//! Peers show each other their tickets in the peer-link handshake, so a name on a peer link
//! is one the registry vouched for. Short-lived (`lifetime`, 10 minutes by default) so that a
//! logged-out or renamed user's ticket soon stops working; peers ask again well before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pchat_protocol::secure::{Identity, Ticket};
use p2pchat_protocol::{status, Msg};

use crate::io::ConnId;
use crate::registry::Registry;

/// What the registry needs to issue tickets.
pub(crate) struct TicketIssuer {
    identity: Arc<Identity>,
    lifetime: Duration,
}

/// How far back a ticket's validity starts, for peers whose clocks run a little behind.
const CLOCK_SLACK_SECS: u64 = 60;

impl Registry {
    /// Gives the registry its long-term key: from then on it answers `GetTicket`. Tickets are
    /// valid for `lifetime`.
    pub fn set_identity(&mut self, identity: Arc<Identity>, lifetime: Duration) {
        self.tickets = Some(TicketIssuer { identity, lifetime });
    }

    pub(crate) fn handle_get_ticket(&mut self, now: Instant, conn: ConnId, id: u32, key: [u8; 32]) {
        let Some(account) = self.require_login(conn, id) else {
            return;
        };
        let Some(issuer) = &self.tickets else {
            self.reply_error(
                conn,
                id,
                status::INTERNAL,
                "this registry issues no tickets",
            );
            return;
        };
        let Some(name) = self.accounts.name_of(account) else {
            self.error(conn, id, status::NOT_LOGGED_IN);
            return;
        };
        let now_secs = u64::try_from(self.wall_ms(now) / 1000).unwrap_or(0);
        let registry_key = issuer.identity.public_key();
        let ticket = Ticket {
            key_id: registry_key.fingerprint().key_id(),
            name,
            key: p2pchat_protocol::secure::PublicKey(key),
            not_before: now_secs.saturating_sub(CLOCK_SLACK_SECS),
            not_after: now_secs.saturating_add(issuer.lifetime.as_secs().max(1)),
        }
        .sign(&issuer.identity);
        self.reply(
            conn,
            id,
            Msg::TicketIssued {
                ticket,
                registry_key: registry_key.0,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Harness;
    use p2pchat_protocol::secure::{PublicKey, TicketError};
    use ring::rand::SystemRandom;

    #[test]
    fn a_logged_in_user_gets_a_ticket_for_its_name_and_key_only_after_login() {
        let mut h = Harness::new(Harness::config());
        let registry = Arc::new(Identity::generate(&SystemRandom::new()).unwrap());
        h.reg
            .set_identity(Arc::clone(&registry), Duration::from_secs(600));
        let c = h.connect(1);
        let key = [5u8; 32];
        let refused = h.request(c, Msg::GetTicket { key });
        assert_eq!(Harness::error_code(&refused), Some(status::NOT_LOGGED_IN));
        h.register(c, "alice");
        h.login(c, "alice");
        let Msg::TicketIssued {
            ticket,
            registry_key,
        } = h.request(c, Msg::GetTicket { key })
        else {
            panic!("no ticket");
        };
        assert_eq!(PublicKey(registry_key), registry.public_key());
        // The harness's wall clock starts at 1,700,000,000 s.
        let now = 1_700_000_000;
        let t = Ticket::verify(&ticket, &registry.public_key(), now).unwrap();
        assert_eq!((t.name.as_str(), t.key.0), ("alice", key));
        assert_eq!(t.not_after - t.not_before, 600 + CLOCK_SLACK_SECS);
        assert!(matches!(
            Ticket::verify(&ticket, &registry.public_key(), t.not_after),
            Err(TicketError::Expired { .. })
        ));
    }

    #[test]
    fn without_a_key_the_registry_says_it_issues_none() {
        let mut h = Harness::new(Harness::config());
        let c = h.connect(1);
        h.register(c, "alice");
        h.login(c, "alice");
        let reply = h.request(c, Msg::GetTicket { key: [1; 32] });
        assert_eq!(Harness::error_code(&reply), Some(status::INTERNAL));
    }
}
