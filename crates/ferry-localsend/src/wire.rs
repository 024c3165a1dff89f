//! LocalSend v2.1 JSON messages, decoded with bounds on everything a peer controls.
//!
//! Every decoder takes the whole body (the HTTP layer has already capped its size, see
//! [`MAX_INFO_BODY`] and [`MAX_PREPARE_BODY`]) and returns a typed [`WireError`]; nothing here
//! panics on any input (the `localsend` fuzz target checks that). The file map of a
//! prepare-upload is refused as soon as it holds more than [`MAX_FILES`] entries, while it is
//! being decoded, so a huge offer never becomes a huge `HashMap`.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Largest `info`/`register` body or multicast datagram we read.
pub const MAX_INFO_BODY: usize = 64 << 10;
/// Largest prepare-upload body. 250,000 files of ~200 bytes of JSON each fit.
pub const MAX_PREPARE_BODY: usize = 64 << 20;
/// Most files one prepare-upload may offer: the limit of a Spacedrop manifest.
pub const MAX_FILES: usize = ferry_block::manifest::MAX_ENTRIES;
/// Largest file size a peer may declare (as for Spacedrop).
pub const MAX_FILE_SIZE: u64 = ferry_block::manifest::MAX_FILE_SIZE;
/// Longest alias, device model, fingerprint, file id, file type, in bytes.
pub const MAX_ALIAS: usize = 256;
pub const MAX_FINGERPRINT: usize = 128;
pub const MAX_ID: usize = 128;
pub const MAX_FILE_TYPE: usize = 256;
/// Longest `fileName` (a relative path for folders; each component is checked later).
pub const MAX_FILE_NAME: usize = 4096;
/// Longest `version` ("2.1").
pub const MAX_VERSION: usize = 16;

/// Protocol version we speak.
pub const PROTOCOL_VERSION: &str = "2.1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("{field} is {len} bytes, at most {max} allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("more than {MAX_FILES} files offered")]
    TooManyFiles,
    #[error("file {id:?} declares {size} bytes, more than the limit")]
    TooLarge { id: String, size: u64 },
    #[error("file id {0:?} appears twice")]
    DuplicateId(String),
    #[error("file {key:?} carries the id {id:?}")]
    IdMismatch { key: String, id: String },
    #[error("file {0:?}: sha256 is not 64 hex digits")]
    BadSha256(String),
    #[error("unsupported protocol {0:?}")]
    BadProtocol(String),
    #[error("port 0")]
    BadPort,
}

fn json(e: serde_json::Error) -> WireError {
    WireError::Json(e.to_string())
}

fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), WireError> {
    match s.len() {
        len if len > max => Err(WireError::TooLong { field, len, max }),
        _ => Ok(()),
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Https,
}

impl Protocol {
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        let s = BoundedStr::<16>::deserialize(d)?.0;
        match s.as_str() {
            "http" => Ok(Protocol::Http),
            "https" => Ok(Protocol::Https),
            other => Err(de::Error::custom(WireError::BadProtocol(other.into()))),
        }
    }
}

/// What a device says it is; only for its icon. Unknown values are `desktop`, as the spec says
/// the official implementation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    Mobile,
    #[default]
    Desktop,
    Web,
    Headless,
    Server,
}

impl DeviceType {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Mobile => "mobile",
            DeviceType::Desktop => "desktop",
            DeviceType::Web => "web",
            DeviceType::Headless => "headless",
            DeviceType::Server => "server",
        }
    }
}

impl<'de> Deserialize<'de> for DeviceType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DeviceType, D::Error> {
        let s = BoundedStr::<64>::deserialize(d)?.0;
        Ok(match s.as_str() {
            "mobile" => DeviceType::Mobile,
            "web" => DeviceType::Web,
            "headless" => DeviceType::Headless,
            "server" => DeviceType::Server,
            _ => DeviceType::Desktop,
        })
    }
}

/// A string refused while decoding when longer than `N` bytes (so a 60 MB "alias" fails fast).
struct BoundedStr<const N: usize>(String);

impl<'de, const N: usize> Deserialize<'de> for BoundedStr<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() > N {
            return Err(de::Error::custom(format!(
                "string of {} bytes, at most {N} allowed",
                s.len()
            )));
        }
        Ok(BoundedStr(s))
    }
}

/// A device's description: the multicast announcement, the `register` body and answer, the
/// `info` answer and a prepare-upload's `info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    pub alias: String,
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default)]
    pub device_model: Option<String>,
    #[serde(default, deserialize_with = "device_type_or_null")]
    pub device_type: Option<DeviceType>,
    /// In HTTPS mode the SHA-256 of the device's certificate (upper-case hex), otherwise a
    /// random string. Only a claim until a TLS handshake shows the certificate.
    #[serde(default)]
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default)]
    pub download: bool,
    /// Only in multicast messages: whether this is an announcement that wants an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<bool>,
}

fn default_version() -> String {
    "1.0".into()
}

fn device_type_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DeviceType>, D::Error> {
    Option::<DeviceType>::deserialize(d)
}

impl DeviceInfo {
    /// Checks the lengths and values serde could not, and replaces control and disguising
    /// format characters in the alias and model (they are shown to people).
    pub fn validate(mut self) -> Result<DeviceInfo, WireError> {
        check_len("alias", &self.alias, MAX_ALIAS)?;
        check_len("version", &self.version, MAX_VERSION)?;
        check_len("fingerprint", &self.fingerprint, MAX_FINGERPRINT)?;
        if let Some(m) = &self.device_model {
            check_len("deviceModel", m, MAX_ALIAS)?;
        }
        if self.port == Some(0) {
            return Err(WireError::BadPort);
        }
        self.alias = displayable(&self.alias);
        if self.alias.trim().is_empty() {
            return Err(WireError::Empty { field: "alias" });
        }
        self.device_model = self.device_model.as_deref().map(displayable);
        Ok(self)
    }

    pub fn device_type_or_default(&self) -> DeviceType {
        self.device_type.unwrap_or_default()
    }
}

/// Control characters and invisible formatting (bidi overrides, zero-width) become U+FFFD: a
/// peer's alias must not reorder or hide what a prompt says.
pub fn displayable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if ferry_util::text::is_hidden(c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// One file of a prepare-upload. `fileType`, `preview` and unknown fields are skipped unread
/// (a preview can be a large data URL we never show).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub id: String,
    pub file_name: String,
    pub size: u64,
    #[serde(default = "octet_stream")]
    pub file_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FileMetadata>,
}

fn octet_stream() -> String {
    "application/octet-stream".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FileMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accessed: Option<String>,
}

impl FileInfo {
    fn validate(&mut self, key: &str) -> Result<(), WireError> {
        check_len("file id", &self.id, MAX_ID)?;
        check_len("fileName", &self.file_name, MAX_FILE_NAME)?;
        check_len("fileType", &self.file_type, MAX_FILE_TYPE)?;
        if self.id != key {
            return Err(WireError::IdMismatch {
                key: key.into(),
                id: self.id.clone(),
            });
        }
        if self.id.is_empty() {
            return Err(WireError::Empty { field: "file id" });
        }
        if self.size > MAX_FILE_SIZE {
            return Err(WireError::TooLarge {
                id: self.id.clone(),
                size: self.size,
            });
        }
        if let Some(m) = &self.metadata {
            for t in [&m.modified, &m.accessed].into_iter().flatten() {
                check_len("metadata", t, 64)?;
            }
        }
        // Some senders send "" for "no hash".
        match self.sha256.as_deref() {
            None | Some("") => self.sha256 = None,
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                self.sha256 = Some(h.to_ascii_lowercase())
            }
            Some(_) => return Err(WireError::BadSha256(self.id.clone())),
        }
        Ok(())
    }

    /// The declared SHA-256 as bytes.
    pub fn sha256_bytes(&self) -> Option<[u8; 32]> {
        let h = self.sha256.as_deref()?;
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }
}

/// `POST /api/localsend/v2/prepare-upload` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrepareUpload {
    pub info: DeviceInfo,
    /// In the order the sender listed them.
    #[serde(serialize_with = "files_as_map")]
    pub files: Vec<FileInfo>,
}

fn files_as_map<S: serde::Serializer>(files: &[FileInfo], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(files.len()))?;
    for f in files {
        m.serialize_entry(&f.id, f)?;
    }
    m.end()
}

#[derive(Deserialize)]
struct RawPrepare {
    info: DeviceInfo,
    #[serde(deserialize_with = "bounded_files")]
    files: Vec<(String, FileInfo)>,
}

/// A JSON object of at most `max` entries with distinct keys, as a list in order.
struct BoundedMap<T> {
    max: usize,
    item: std::marker::PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedMap<T> {
    type Value = Vec<(String, T)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object of at most {} entries", self.max)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<BoundedStr<MAX_ID>>()? {
            if out.len() == self.max {
                return Err(de::Error::custom(TOO_MANY));
            }
            let key = key.0;
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("{DUPLICATE}{key:?}")));
            }
            let value = map.next_value::<T>()?;
            out.push((key, value));
        }
        Ok(out)
    }
}

// Markers to recover typed errors from serde's string errors.
const TOO_MANY: &str = "ferry: too many files";
const DUPLICATE: &str = "ferry: duplicate file id ";

fn bounded_files<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, FileInfo)>, D::Error> {
    d.deserialize_map(BoundedMap {
        max: MAX_FILES,
        item: std::marker::PhantomData,
    })
}

fn map_json(e: serde_json::Error) -> WireError {
    let msg = e.to_string();
    if msg.starts_with(TOO_MANY) {
        WireError::TooManyFiles
    } else if let Some(rest) = msg.strip_prefix(DUPLICATE) {
        let id = rest.split(" at line").next().unwrap_or(rest);
        WireError::DuplicateId(id.trim_matches('"').to_string())
    } else {
        json(e)
    }
}

/// Decodes and checks a prepare-upload body. File names are checked as paths later, when
/// they become a Spacedrop manifest ([`crate::offer`]).
pub fn decode_prepare_upload(body: &[u8]) -> Result<PrepareUpload, WireError> {
    if body.len() > MAX_PREPARE_BODY {
        return Err(WireError::TooLong {
            field: "body",
            len: body.len(),
            max: MAX_PREPARE_BODY,
        });
    }
    let raw: RawPrepare = serde_json::from_slice(body).map_err(map_json)?;
    let info = raw.info.validate()?;
    let mut files = Vec::with_capacity(raw.files.len());
    for (key, mut f) in raw.files {
        f.validate(&key)?;
        files.push(f);
    }
    Ok(PrepareUpload { info, files })
}

/// Decodes a device description (`register`, `info`, multicast).
pub fn decode_device_info(body: &[u8]) -> Result<DeviceInfo, WireError> {
    if body.len() > MAX_INFO_BODY {
        return Err(WireError::TooLong {
            field: "body",
            len: body.len(),
            max: MAX_INFO_BODY,
        });
    }
    let info: DeviceInfo = serde_json::from_slice(body).map_err(json)?;
    info.validate()
}

/// The answer to a prepare-upload: the session and one token per accepted file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareUploadResponse {
    pub session_id: String,
    #[serde(serialize_with = "tokens_as_map")]
    pub files: Vec<(String, String)>,
}

fn tokens_as_map<S: serde::Serializer>(t: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(t.len()))?;
    for (k, v) in t {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResponse {
    session_id: BoundedStr<MAX_ID>,
    #[serde(deserialize_with = "bounded_tokens")]
    files: Vec<(String, BoundedStr<MAX_ID>)>,
}

fn bounded_tokens<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, BoundedStr<MAX_ID>)>, D::Error> {
    d.deserialize_map(BoundedMap {
        max: MAX_FILES,
        item: std::marker::PhantomData,
    })
}

/// Decodes a receiver's prepare-upload answer (we are the sender).
pub fn decode_prepare_response(body: &[u8]) -> Result<PrepareUploadResponse, WireError> {
    if body.len() > MAX_PREPARE_BODY {
        return Err(WireError::TooLong {
            field: "body",
            len: body.len(),
            max: MAX_PREPARE_BODY,
        });
    }
    let raw: RawResponse = serde_json::from_slice(body).map_err(map_json)?;
    if raw.session_id.0.is_empty() {
        return Err(WireError::Empty { field: "sessionId" });
    }
    Ok(PrepareUploadResponse {
        session_id: raw.session_id.0,
        files: raw.files.into_iter().map(|(k, v)| (k, v.0)).collect(),
    })
}

/// Query parameters of `upload` and `cancel` (and `pin` of prepare-upload), percent-decoded.
/// Unknown parameters are ignored; a repeated one keeps its first value.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub session_id: Option<String>,
    pub file_id: Option<String>,
    pub token: Option<String>,
    pub pin: Option<String>,
}

/// Longest query string we look at.
pub const MAX_QUERY: usize = 2048;

pub fn parse_query(q: Option<&str>) -> Result<Query, WireError> {
    let q = q.unwrap_or("");
    check_len("query", q, MAX_QUERY)?;
    let mut out = Query::default();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or(WireError::Json("bad percent-encoding".into()))?;
        let slot = match k {
            "sessionId" => &mut out.session_id,
            "fileId" => &mut out.file_id,
            "token" => &mut out.token,
            "pin" => &mut out.pin,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v);
        }
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Skips a JSON value of any shape without keeping it (used by the fuzz target's checks).
pub fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(body).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(files: &str) -> Vec<u8> {
        format!(r#"{{"info":{{"alias":"Nice Orange","version":"2.0","deviceModel":"Samsung","deviceType":"mobile","fingerprint":"abc","port":53317,"protocol":"https","download":true}},"files":{files}}}"#).into_bytes()
    }

    #[test]
    fn decodes_the_spec_example() {
        let body = prepare(
            r#"{"some file id":{"id":"some file id","fileName":"my image.png","size":324242,"fileType":"image/jpeg","sha256":null,"preview":"*preview data*","metadata":{"modified":"2021-01-01T12:34:56Z","accessed":null}},
                "another":{"id":"another","fileName":"b.jpg","size":1234,"fileType":"image/jpeg","sha256":"AB01AB01AB01AB01AB01AB01AB01AB01AB01AB01AB01AB01AB01AB01AB01AB01"}}"#,
        );
        let p = decode_prepare_upload(&body).unwrap();
        assert_eq!(p.info.alias, "Nice Orange");
        assert_eq!(p.info.device_type, Some(DeviceType::Mobile));
        assert_eq!(p.files.len(), 2);
        assert_eq!(p.files[0].id, "some file id");
        assert_eq!(p.files[1].sha256.as_deref().unwrap().len(), 64);
        assert_eq!(p.files[1].sha256_bytes().unwrap()[0], 0xab);
        // What we encode, we decode to the same.
        let again = decode_prepare_upload(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn refuses_what_a_peer_could_lie_about() {
        let big = format!(
            r#"{{"a":{{"id":"a","fileName":"x","size":{}}}}}"#,
            MAX_FILE_SIZE + 1
        );
        assert!(matches!(
            decode_prepare_upload(&prepare(&big)),
            Err(WireError::TooLarge { .. })
        ));
        let dup =
            r#"{"a":{"id":"a","fileName":"x","size":1},"a":{"id":"a","fileName":"y","size":1}}"#;
        assert_eq!(
            decode_prepare_upload(&prepare(dup)),
            Err(WireError::DuplicateId("a".into()))
        );
        let mismatch = r#"{"a":{"id":"b","fileName":"x","size":1}}"#;
        assert!(matches!(
            decode_prepare_upload(&prepare(mismatch)),
            Err(WireError::IdMismatch { .. })
        ));
        let sha = r#"{"a":{"id":"a","fileName":"x","size":1,"sha256":"zz"}}"#;
        assert!(matches!(
            decode_prepare_upload(&prepare(sha)),
            Err(WireError::BadSha256(_))
        ));
        let negative = r#"{"a":{"id":"a","fileName":"x","size":-1}}"#;
        assert!(matches!(
            decode_prepare_upload(&prepare(negative)),
            Err(WireError::Json(_))
        ));
        let long_id = format!(
            r#"{{"{0}":{{"id":"{0}","fileName":"x","size":1}}}}"#,
            "i".repeat(MAX_ID + 1)
        );
        assert!(decode_prepare_upload(&prepare(&long_id)).is_err());
        let alias = format!(r#"{{"alias":"{}"}}"#, "a".repeat(MAX_ALIAS + 1));
        assert!(matches!(
            decode_device_info(alias.as_bytes()),
            Err(WireError::TooLong { .. })
        ));
        assert!(decode_device_info(b"[1,2]").is_err());
        assert!(decode_device_info(br#"{"alias":"x","protocol":"gopher"}"#).is_err());
        assert!(decode_device_info(br#"{"alias":"x","port":0}"#).is_err());
        assert!(decode_device_info(br#"{"alias":"  "}"#).is_err());
    }

    #[test]
    fn file_count_is_bounded_while_decoding() {
        let mut files = String::from("{");
        for i in 0..=MAX_FILES {
            if i > 0 {
                files.push(',');
            }
            files.push_str(&format!(r#""{i}":{{"id":"{i}","fileName":"f","size":1}}"#));
        }
        files.push('}');
        let body = prepare(&files);
        assert!(
            body.len() < MAX_PREPARE_BODY,
            "the count limit is what refuses it"
        );
        assert_eq!(decode_prepare_upload(&body), Err(WireError::TooManyFiles));
    }

    #[test]
    fn unknown_device_types_are_desktop_and_aliases_are_defused() {
        let i = decode_device_info(
            "{\"alias\":\"evil\u{202e}gpj.exe\\u0007\",\"deviceType\":\"toaster\",\"fingerprint\":\"F\"}"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(i.device_type, Some(DeviceType::Desktop));
        assert_eq!(i.alias, "evil\u{fffd}gpj.exe\u{fffd}");
        let n = decode_device_info(br#"{"alias":"x","deviceType":null}"#).unwrap();
        assert_eq!(n.device_type, None);
        assert_eq!(n.version, "1.0");
    }

    #[test]
    fn responses_and_queries() {
        let r =
            decode_prepare_response(br#"{"sessionId":"s1","files":{"a":"t1","b":"t2"}}"#).unwrap();
        assert_eq!(r.session_id, "s1");
        assert_eq!(
            r.files,
            vec![("a".into(), "t1".into()), ("b".into(), "t2".into())]
        );
        assert!(decode_prepare_response(br#"{"sessionId":"","files":{}}"#).is_err());
        let q = parse_query(Some("sessionId=s%201&fileId=a+b&token=t&x=1&token=other")).unwrap();
        assert_eq!(q.session_id.as_deref(), Some("s 1"));
        assert_eq!(q.file_id.as_deref(), Some("a b"));
        assert_eq!(q.token.as_deref(), Some("t"));
        assert!(parse_query(Some("pin=%zz")).is_err());
        assert!(parse_query(Some(&"a".repeat(MAX_QUERY + 1))).is_err());
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
        let back = parse_query(Some(&format!("pin={}", percent_encode("1 2&3")))).unwrap();
        assert_eq!(back.pin.as_deref(), Some("1 2&3"));
    }
}
