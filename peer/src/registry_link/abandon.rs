//! The registry timeout's side of the registry link: progress counting and giving up on the
//! requests waiting for an answer that does not come.

use std::collections::VecDeque;

use super::{event, Outcome, RegistryLink, Request};
use crate::io::{NodeEvent, Output};

impl RegistryLink {
    /// Replies handled so far (grows whenever the registry answers anything).
    pub(crate) fn answered(&self) -> u64 {
        self.answered
    }

    /// Gives up on every user request sent or queued (the registry did not answer in time):
    /// each is told `the registry did not answer`, once, and a late reply is ignored. Pings and
    /// a resume stay: the link's own deadlines look after them.
    pub(crate) fn abandon_requests(
        &mut self,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        const MESSAGE: &str = "the registry did not answer";
        let pending = std::mem::take(&mut self.pending);
        let mut told = false;
        let user = pending
            .into_iter()
            .filter_map(|(id, req)| match req {
                Request::Ping | Request::Resume => {
                    self.pending.insert(id, req);
                    None
                }
                req => Some(req),
            })
            .collect::<Vec<_>>();
        let queued = std::mem::take(&mut self.queued);
        for req in user
            .into_iter()
            .chain(queued.into_iter().map(|(req, _)| req))
        {
            match req {
                Request::Search {
                    name,
                    for_chat: true,
                } => outcomes.push(Outcome::ChatSearch {
                    query: name,
                    result: Err(MESSAGE.into()),
                }),
                // Room messages held for the new name's ticket go now (with the old one)
                // rather than wait for the next renewal.
                Request::Ticket => self.ticket_settled(outcomes),
                _ if !told => {
                    told = true;
                    event(out, NodeEvent::error(MESSAGE));
                }
                _ => {}
            }
        }
    }
}
