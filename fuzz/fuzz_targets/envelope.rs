//! Arbitrary bytes through the bus envelope decoder, as the server receives them from agents over NATS
//! and HTTP: untyped (`Envelope<serde_json::Value>`) and with the typed bodies agents send
//! (heartbeat, task status report, metrics batch). Never panics, and whatever decodes:
//!
//! - is of the one version this build reads;
//! - encodes (unless the re-encoding outgrows the size limit), and decoding that gives an equal
//!   envelope, which encodes to the same bytes again;
//! - when it decodes both typed and untyped, the envelope fields agree and the untyped body converts to
//!   the same typed body. (Typed decoding can succeed where untyped fails: the fields a typed body
//!   ignores are skipped unchecked, e.g. invalid UTF-8 or `1e999` there, which a JSON value refuses.)
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use phoenix_nats::wire::{Heartbeat, MetricsBatch, TaskStatusReport};
use phoenix_nats::{Envelope, EnvelopeError, ENVELOPE_VERSION};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let untyped = Envelope::<Value>::decode(data).ok();
    if let Some(envelope) = &untyped {
        round_trip(envelope);
    }
    typed::<Heartbeat>(data, untyped.as_ref());
    typed::<TaskStatusReport>(data, untyped.as_ref());
    typed::<MetricsBatch>(data, untyped.as_ref());
});

fn typed<T>(data: &[u8], untyped: Option<&Envelope<Value>>)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(envelope) = Envelope::<T>::decode(data) else { return };
    round_trip(&envelope);
    let Some(untyped) = untyped else { return };
    assert_eq!(
        (&envelope.v, &envelope.kind, &envelope.id, &envelope.ts, &envelope.auth),
        (&untyped.v, &untyped.kind, &untyped.id, &untyped.ts, &untyped.auth)
    );
    let body: T = serde_json::from_value(untyped.body.clone()).expect("the untyped body converts to the typed one");
    assert_eq!(body, envelope.body);
}

fn round_trip<T>(envelope: &Envelope<T>)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    assert_eq!(envelope.v, ENVELOPE_VERSION);
    let bytes = match envelope.encode() {
        Ok(bytes) => bytes,
        // Re-encoding may be longer than the input (`1e9` -> `1000000000.0`).
        Err(EnvelopeError::TooLarge { .. }) => return,
        Err(e) => panic!("a decoded envelope does not encode: {e:?}"),
    };
    let again = match Envelope::<T>::decode(&bytes) {
        Ok(again) => again,
        Err(e) => panic!("an encoded envelope does not decode: {e:?} ({e}) in {}", String::from_utf8_lossy(&bytes)),
    };
    assert_eq!(&again, envelope, "decode(encode(envelope)) differs; encoded: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(again.encode().expect("encodes again"), bytes, "encoding is not stable");
}
