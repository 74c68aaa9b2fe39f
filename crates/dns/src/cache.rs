//! The answer cache: encoded responses to questions the cluster zone answered, keyed by the question's own
//! bytes, so that a repeated question is answered by copying bytes instead of parsing, looking up and encoding.
//!
//! The key is what the answer depends on ([`request_key`]): the request after its ID, the question's name in
//! lower case, an EDNS record's options left out. Two requests with the same key get the same response but for
//! the ID and the letter case of the question, which [`AnswerCache::answer`] copies from the request. Every entry is stamped with the zone's
//! generation when its answer was looked up, and any change to the zone moves the generation on, so an entry
//! never outlives the records it was made from: a change is visible to the very next question.
//!
//! Only authoritative NOERROR and NXDOMAIN answers that were not truncated and hold no CNAME (an ExternalName's
//! target may come from upstream, whose TTLs run down) are kept; forwarded answers are cached by the resolver.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::metrics::{CachedCounters, Metrics};

/// The most entries kept; past it the cache starts over (the zone has far fewer names than this).
const CAPACITY: usize = 100_000;
/// The DNS header's length; the question starts here.
const HEADER: usize = 12;

/// A change counter shared by the zone (which moves it on every change) and the cache (which compares with it).
pub type Generation = Arc<AtomicU64>;

/// One kept response, in one allocation: the key, then the response's flags and counts (10 bytes), then the
/// response after its question (the question is the asker's own, copied from the request).
struct Entry {
    generation: u64,
    bytes: Box<[u8]>,
    key_length: u16,
    /// Shared by every entry of the same question type and response code.
    counters: Arc<CachedCounters>,
}

/// Keys are hashed once, by the cache's own [`RandomState`]; the map takes that hash as it is.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

struct Entries {
    /// By the hash of the key (a colliding key is told apart by the bytes, and misses).
    by_hash: HashMap<u64, Entry, BuildHasherDefault<PreHashed>>,
    counters: HashMap<(u16, u16), Arc<CachedCounters>>,
}

/// Encoded zone answers, by question.
pub struct AnswerCache {
    entries: RwLock<Entries>,
    hasher: RandomState,
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
        let entries = Entries { by_hash: HashMap::default(), counters: HashMap::new() };
        AnswerCache { entries: RwLock::new(entries), hasher: RandomState::new(), generation, metrics: Metrics::get() }
    }

    /// The zone's generation now: stamp an answer with it before looking it up.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Writes the response to `request` into `out` when a current one is kept (`key` is the request's key, its
    /// question ends at `end`), counting the hit or the miss.
    pub fn answer(&self, request: &[u8], end: usize, key: &[u8], out: &mut Vec<u8>) -> bool {
        let generation = self.generation();
        let hash = self.hasher.hash_one(key);
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let found = entries.by_hash.get(&hash).filter(|e| {
            e.generation == generation && usize::from(e.key_length) == key.len() && e.bytes.starts_with(key)
        });
        let Some(entry) = found else {
            drop(entries);
            self.metrics.cache_misses.inc();
            return false;
        };
        let kept = &entry.bytes[key.len()..];
        out.clear();
        out.extend_from_slice(&request[..2]);
        out.extend_from_slice(&kept[..HEADER - 2]);
        out.extend_from_slice(&request[HEADER..end]);
        out.extend_from_slice(&kept[HEADER - 2..]);
        entry.counters.count();
        true
    }

    /// Keeps `response` to the request with `key` when it may be reused, stamped with `generation`.
    pub fn insert(&self, key: &[u8], generation: u64, response: &[u8]) {
        let Some((qtype, code)) = reusable(response) else { return };
        let Some(end) = name_end(response, HEADER).map(|e| e + 4).filter(|e| *e <= response.len()) else { return };
        let Ok(key_length) = u16::try_from(key.len()) else { return };
        let mut bytes = Vec::with_capacity(key.len() + HEADER - 2 + response.len() - end);
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(&response[2..HEADER]);
        bytes.extend_from_slice(&response[end..]);
        let hash = self.hasher.hash_one(key);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.by_hash.len() >= CAPACITY {
            entries.by_hash.clear();
        }
        let counters = entries
            .counters
            .entry((u16::from(qtype), u16::from(code)))
            .or_insert_with(|| Arc::new(self.metrics.cached_counters(qtype, code)))
            .clone();
        entries.by_hash.insert(hash, Entry { generation, bytes: bytes.into(), key_length, counters });
    }

    /// How many entries are kept (stale ones included).
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).by_hash.len()
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
