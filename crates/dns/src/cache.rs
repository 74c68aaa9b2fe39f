//! The answer cache: encoded responses to questions the cluster zone answered, keyed by the question's own
//! bytes, so that a repeated question is answered by copying bytes instead of parsing, looking up and encoding.
//!
//! The key is what the answer depends on ([`request_key`]): the request after its ID, the question's name in
//! lower case, an EDNS record's options left out. Two requests with the same key get the same response but for
//! the ID and the letter case of the question, which [`AnswerCache::answer`] copies from the request. The cache
//! holds the answers of one zone generation: an answer is stamped with the generation it was looked up in, any
//! change to the zone moves the generation on, and the first answer of a new generation empties the cache, so
//! an entry never outlives the records it was made from: a change is visible to the very next question.
//!
//! An entry is known by its key's [`Fingerprint`], not the key itself: two 64-bit SipHash values under
//! independent random keys drawn when the process starts, 128 bits in all. The chance that two of the at most
//! ~100,000 questions kept at once share one is below 10^-28, and since the keys are secret no asker can aim for
//! a collision; keeping the fingerprint instead of the question's name halves an entry. Entries lie back to back
//! in one buffer, indexed by a table of 4-byte offsets ([`hashbrown::HashTable`]), so that an entry costs its
//! fingerprint, its response and about 14 bytes more (a boxed entry with its key in a map of hashes cost about
//! 260 bytes at 30,000 questions; this, about 118: 107 in the buffer, 11 in the table). The buffer is bounded ([`MAX_BYTES`]); when it is full the
//! cache starts over.
//!
//! Only authoritative NOERROR and NXDOMAIN answers that were not truncated and hold no CNAME (an ExternalName's
//! target may come from upstream, whose TTLs run down) are kept; forwarded answers are cached by the resolver.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::HashTable;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::metrics::{CachedCounters, Metrics};

/// The most bytes of entries kept (about 75,000 answers); past it the cache starts over.
const MAX_BYTES: usize = 8 << 20;
/// The DNS header's length; the question starts here.
pub(crate) const HEADER: usize = 12;
/// An entry's own header: its key's fingerprint (16 bytes), its kept response's length (2) and its counters (1).
const ENTRY_HEADER: usize = 19;

/// What a key is known by: its hash under the table's hasher and under a second, independent one.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    table: u64,
    check: u64,
}

/// A change counter shared by the zone (which moves it on every change) and the cache (which compares with it).
pub type Generation = Arc<AtomicU64>;

/// The answers of one generation.
struct Entries {
    generation: u64,
    /// Entries back to back, each its [`ENTRY_HEADER`], then the response's flags and counts (10 bytes) and the
    /// response after its question (the question is the asker's own, copied from the request).
    bytes: Vec<u8>,
    /// Where each entry starts in `bytes`, by the hash of its key.
    index: HashTable<u32>,
    /// Counters shared by every entry of a question type and response code; an entry holds its position.
    counters: Vec<((u16, u16), CachedCounters)>,
}

/// One entry, read from where it starts.
struct Kept<'a> {
    response: &'a [u8],
    counters: usize,
}

impl Entries {
    fn at(&self, start: u32) -> Kept<'_> {
        let (bytes, at) = (&self.bytes, start as usize);
        let response_length = usize::from(u16::from_le_bytes([bytes[at + 16], bytes[at + 17]]));
        let response_start = at + ENTRY_HEADER;
        Kept {
            response: &bytes[response_start..response_start + response_length],
            counters: usize::from(bytes[at + 18]),
        }
    }

    fn clear(&mut self, generation: u64) {
        self.generation = generation;
        self.bytes = Vec::new();
        self.index = HashTable::new();
    }
}

/// The fingerprint of the entry at `start`: all a lookup compares.
fn fingerprint_at(bytes: &[u8], start: u32) -> Fingerprint {
    let at = start as usize;
    let word = |from: usize| u64::from_le_bytes(bytes[from..from + 8].try_into().unwrap_or_default());
    Fingerprint { table: word(at), check: word(at + 8) }
}

/// Encoded zone answers, by question.
pub struct AnswerCache {
    entries: RwLock<Entries>,
    /// The two keyed hashers of a [`Fingerprint`].
    hashers: [RandomState; 2],
    generation: Generation,
    metrics: Metrics,
}

/// Where the name starting at `at` ends (past its root label), when written out label by label.
fn name_end(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = usize::from(*message.get(at)?);
        if length == 0 {
            return Some(at + 1);
        }
        if length > 63 {
            return None;
        }
        at += 1 + length;
    }
}

/// Where a request's question ends (past its type and class), when it has exactly one question whose name is
/// written out label by label (no compression pointer), and nothing in the answer and authority sections.
pub fn question_end(request: &[u8]) -> Option<usize> {
    if request.len() < HEADER || request[4..6] != [0, 1] || request[6..10] != [0, 0, 0, 0] {
        return None;
    }
    let end = name_end(request, HEADER)? + 4;
    (end <= request.len()).then_some(end)
}

/// Writes the cache key of `request` into `key` and returns where its question ends, when it has one: the
/// flags, the counts and the question, its name in lower case (length bytes are at most 63, below every ASCII
/// letter, so lower-casing the whole name is safe), and of an EDNS record only what the answer depends on (the
/// payload size, version and flags; not its options, such as a client's random cookie). A request with any
/// other additional record has no key.
pub fn request_key(request: &[u8], key: &mut Vec<u8>) -> Option<usize> {
    let end = question_end(request)?;
    key.clear();
    key.extend_from_slice(&request[2..end]);
    key[HEADER - 2..].make_ascii_lowercase();
    match (request[10..12] == [0, 0], &request[end..]) {
        (true, []) => Some(end),
        // The root name, type OPT (41), then the payload size, extended code, version and flags.
        (false, [0, 0, 41, edns @ ..]) if request[10..12] == [0, 1] && edns.len() >= 8 => {
            key.extend_from_slice(&edns[..6]);
            Some(end)
        }
        _ => None,
    }
}

impl AnswerCache {
    pub fn new(generation: Generation) -> AnswerCache {
        let entries = Entries { generation: 0, bytes: Vec::new(), index: HashTable::new(), counters: Vec::new() };
        let hashers = [RandomState::new(), RandomState::new()];
        AnswerCache { entries: RwLock::new(entries), hashers, generation, metrics: Metrics::get() }
    }

    fn fingerprint(&self, key: &[u8]) -> Fingerprint {
        Fingerprint { table: self.hashers[0].hash_one(key), check: self.hashers[1].hash_one(key) }
    }

    /// The zone's generation now: stamp an answer with it before looking it up.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Appends the response to `request` to `out` when a current one is kept (`key` is the request's key, its
    /// question ends at `end`), counting the hit or the miss.
    pub fn answer(&self, request: &[u8], end: usize, key: &[u8], out: &mut Vec<u8>) -> bool {
        let generation = self.generation();
        let fingerprint = self.fingerprint(key);
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let found = if entries.generation == generation {
            let (index, bytes) = (&entries.index, &entries.bytes);
            index.find(fingerprint.table, |&start| fingerprint_at(bytes, start) == fingerprint).map(|&s| entries.at(s))
        } else {
            None
        };
        let Some(kept) = found else {
            drop(entries);
            self.metrics.cache_misses.inc();
            return false;
        };
        out.extend_from_slice(&request[..2]);
        out.extend_from_slice(&kept.response[..HEADER - 2]);
        out.extend_from_slice(&request[HEADER..end]);
        out.extend_from_slice(&kept.response[HEADER - 2..]);
        entries.counters[kept.counters].1.count();
        true
    }

    /// Keeps `response` to the request with `key` when it may be reused, stamped with `generation`.
    pub fn insert(&self, key: &[u8], generation: u64, response: &[u8]) {
        let Some((qtype, code)) = reusable(response) else { return };
        let Some(end) = name_end(response, HEADER).map(|e| e + 4).filter(|e| *e <= response.len()) else { return };
        let kept_length = HEADER - 2 + response.len() - end;
        let Ok(kept_length) = u16::try_from(kept_length) else { return };
        let fingerprint = self.fingerprint(key);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if generation != entries.generation {
            if generation < entries.generation {
                return; // looked up before a change the cache has already seen
            }
            entries.clear(generation);
        }
        let size = ENTRY_HEADER + usize::from(kept_length);
        if entries.bytes.len() + size > MAX_BYTES {
            entries.clear(generation);
        }
        let Entries { bytes, index, counters, .. } = &mut *entries;
        if index.find(fingerprint.table, |&start| fingerprint_at(bytes, start) == fingerprint).is_some() {
            return;
        }
        let kind = (u16::from(qtype), u16::from(code));
        let position = match counters.iter().position(|(k, _)| *k == kind) {
            Some(position) => position,
            None => {
                counters.push((kind, self.metrics.cached_counters(qtype, code)));
                counters.len() - 1
            }
        };
        let (Ok(position), Ok(start)) = (u8::try_from(position), u32::try_from(bytes.len())) else { return };
        bytes.extend_from_slice(&fingerprint.table.to_le_bytes());
        bytes.extend_from_slice(&fingerprint.check.to_le_bytes());
        bytes.extend_from_slice(&kept_length.to_le_bytes());
        bytes.push(position);
        bytes.extend_from_slice(&response[2..HEADER]);
        bytes.extend_from_slice(&response[end..]);
        index.insert_unique(fingerprint.table, start, |&s| fingerprint_at(bytes, s).table);
        self.metrics.cache_entries.set(i64::try_from(index.len()).unwrap_or(i64::MAX));
        self.metrics.cache_bytes.set(i64::try_from(bytes.len()).unwrap_or(i64::MAX));
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The question's type and the response code of `response`, when it may be reused: authoritative, not
/// truncated, NOERROR or NXDOMAIN, with no CNAME among its answers.
fn reusable(response: &[u8]) -> Option<(RecordType, ResponseCode)> {
    let flags = response.get(2..4)?;
    let authoritative = flags[0] & 0x04 != 0;
    let truncated = flags[0] & 0x02 != 0;
    if !authoritative || truncated {
        return None;
    }
    let message = Message::from_vec(response).ok()?;
    let code = message.metadata.response_code;
    let no_alias = message.answers.iter().all(|r| r.record_type() != RecordType::CNAME);
    let qtype = message.queries.first()?.query_type();
    (matches!(code, ResponseCode::NoError | ResponseCode::NXDomain) && no_alias).then_some((qtype, code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, Record, rdata};
    use std::str::FromStr;

    fn request(id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    fn response(request: &[u8], authoritative: bool, rdata: RData) -> Vec<u8> {
        let asked = Message::from_vec(request).unwrap();
        let mut m = Message::new(asked.metadata.id, MessageType::Response, OpCode::Query);
        m.metadata.authoritative = authoritative;
        m.metadata.recursion_desired = true;
        let name = asked.queries[0].name().clone();
        m.add_query(asked.queries[0].clone());
        m.add_answer(Record::from_rdata(name, 5, rdata));
        m.to_vec().unwrap()
    }

    #[test]
    fn a_kept_answer_is_reused_with_the_askers_id_and_case_until_the_zone_changes() {
        let generation = Generation::default();
        let cache = AnswerCache::new(generation.clone());
        let first = request(7, "web.default.svc.cluster.local.");
        let mut key = Vec::new();
        let end = request_key(&first, &mut key).expect("one plain question");
        let mut out = Vec::new();
        assert!(!cache.answer(&first, end, &key, &mut out), "nothing kept yet");
        let answer = response(&first, true, RData::A(rdata::A::new(10, 43, 0, 7)));
        cache.insert(&key, cache.generation(), &answer);

        let mut again = request(9, "web.default.svc.cluster.local.");
        again[13..16].make_ascii_uppercase();
        let mut again_key = Vec::new();
        let end = request_key(&again, &mut again_key).expect("one plain question");
        assert_eq!(again_key, key, "the key ignores the ID and the letter case");
        assert!(cache.answer(&again, end, &again_key, &mut out));
        let reused = Message::from_vec(&out).expect("a well-formed response");
        assert_eq!(reused.metadata.id, 9);
        assert_eq!(reused.queries[0].name().to_string(), "WEB.default.svc.cluster.local.");
        assert_eq!(reused.answers[0].data, RData::A(rdata::A::new(10, 43, 0, 7)));

        generation.fetch_add(1, Ordering::Release);
        assert!(!cache.answer(&again, end, &again_key, &mut out), "a zone change retires every entry");
    }

    #[test]
    fn an_answer_looked_up_before_a_change_is_never_reused_after_it() {
        let generation = Generation::default();
        let cache = AnswerCache::new(generation.clone());
        let (web, db) = (request(1, "web.default.svc.cluster.local."), request(2, "db.default.svc.cluster.local."));
        let (mut web_key, mut db_key, mut out) = (Vec::new(), Vec::new(), Vec::new());
        let web_end = request_key(&web, &mut web_key).unwrap();
        let db_end = request_key(&db, &mut db_key).unwrap();
        let stamped = cache.generation();
        generation.fetch_add(1, Ordering::Release);
        cache.insert(&db_key, cache.generation(), &response(&db, true, RData::A(rdata::A::new(10, 43, 0, 8))));
        cache.insert(&web_key, stamped, &response(&web, true, RData::A(rdata::A::new(10, 43, 0, 7))));
        assert!(!cache.answer(&web, web_end, &web_key, &mut out), "the late answer of the old zone was dropped");
        assert!(cache.answer(&db, db_end, &db_key, &mut out), "the new zone's answer is kept");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn only_authoritative_answers_without_aliases_are_kept() {
        let cache = AnswerCache::new(Generation::default());
        let asked = request(1, "web.default.svc.cluster.local.");
        let mut key = Vec::new();
        request_key(&asked, &mut key).unwrap();
        let forwarded = response(&asked, false, RData::A(rdata::A::new(192, 0, 2, 1)));
        cache.insert(&key, 0, &forwarded);
        let alias = response(&asked, true, RData::CNAME(rdata::CNAME(Name::from_str("example.test.").unwrap())));
        cache.insert(&key, 0, &alias);
        assert!(cache.is_empty());
    }

    #[test]
    fn only_plain_single_questions_have_a_key() {
        let plain = request(1, "a.b.");
        assert_eq!(question_end(&plain), Some(plain.len()));
        assert_eq!(question_end(&plain[..plain.len() - 1]), None, "cut short");
        let mut two = plain.clone();
        two[5] = 2;
        assert_eq!(question_end(&two), None, "two questions");
        let mut pointer = plain.clone();
        pointer[12] = 0xC0;
        assert_eq!(question_end(&pointer), None, "a compressed name");
        assert_eq!(question_end(&[0; 5]), None, "no header");
    }

    #[test]
    fn an_edns_record_keys_by_its_payload_and_flags_but_not_its_options() {
        let with_edns = |payload: u16, cookie: &[u8]| {
            let mut m = Message::from_vec(&request(1, "a.b.")).unwrap();
            let mut edns = hickory_proto::op::Edns::new();
            edns.set_max_payload(payload);
            if !cookie.is_empty() {
                edns.options_mut().insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(10, cookie.to_vec()));
            }
            m.edns = Some(edns);
            m.to_vec().unwrap()
        };
        let (mut one, mut two) = (Vec::new(), Vec::new());
        assert!(request_key(&with_edns(1232, b"12345678"), &mut one).is_some());
        assert!(request_key(&with_edns(1232, b"87654321"), &mut two).is_some());
        assert_eq!(one, two, "a client cookie does not change the answer");
        request_key(&with_edns(4096, b""), &mut two).unwrap();
        assert_ne!(one, two, "the payload size does");
        let plain = request(1, "a.b.");
        request_key(&plain, &mut two).unwrap();
        assert_ne!(one, two, "and so does having EDNS at all");
        let mut other = with_edns(1232, b"");
        let at = other.len() - 11;
        other[at + 2] = 250; // a TSIG record, not OPT
        assert_eq!(request_key(&other, &mut two), None);
    }
}
