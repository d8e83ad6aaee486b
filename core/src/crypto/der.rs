//! Just enough DER (X.690) to read the X.509 certificates Tor relays send
//! in CERTS: walk TLVs, find the TBS part, the validity window, the public
//! key and the signature. Every read is bounds-checked.

/// One TLV: its tag, its content, and the whole encoding (tag + length +
/// content) for signatures over it.
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub whole: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER: {0}")]
pub struct DerError(pub &'static str);

pub const SEQUENCE: u8 = 0x30;
pub const BIT_STRING: u8 = 0x03;
pub const UTC_TIME: u8 = 0x17;
pub const GENERALIZED_TIME: u8 = 0x18;
pub const OID: u8 = 0x06;

/// Reads one TLV from the front of `input`, advancing it.
pub fn read_tlv<'a>(input: &mut &'a [u8]) -> Result<Tlv<'a>, DerError> {
    let bytes = *input;
    let (&tag, rest) = bytes.split_first().ok_or(DerError("empty"))?;
    let (&first, rest) = rest.split_first().ok_or(DerError("no length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(DerError("unsupported length form"));
        }
        let (len_bytes, rest) = rest.split_at_checked(n).ok_or(DerError("short length"))?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    let (content, after) = rest
        .split_at_checked(len)
        .ok_or(DerError("content past the end"))?;
    let header_len = bytes.len() - rest.len();
    let whole = bytes
        .get(..header_len + len)
        .ok_or(DerError("content past the end"))?;
    *input = after;
    Ok(Tlv {
        tag,
        content,
        whole,
    })
}

/// Reads a TLV and checks its tag.
pub fn expect<'a>(input: &mut &'a [u8], tag: u8, what: &'static str) -> Result<Tlv<'a>, DerError> {
    let tlv = read_tlv(input)?;
    if tlv.tag != tag {
        return Err(DerError(what));
    }
    Ok(tlv)
}

/// Seconds since the Unix epoch for a UTCTime or GeneralizedTime
/// "…YYMMDDHHMMSSZ" value.
pub fn parse_time(tlv: &Tlv<'_>) -> Result<i64, DerError> {
    let text = std::str::from_utf8(tlv.content).map_err(|_| DerError("time is not ASCII"))?;
    let text = text.strip_suffix('Z').ok_or(DerError("time not in UTC"))?;
    let (year, rest) = match tlv.tag {
        UTC_TIME if text.len() == 12 => {
            let yy: i64 = text
                .get(..2)
                .and_then(|s| s.parse().ok())
                .ok_or(DerError("bad year"))?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..))
        }
        GENERALIZED_TIME if text.len() == 14 => (
            text.get(..4)
                .and_then(|s| s.parse().ok())
                .ok_or(DerError("bad year"))?,
            text.get(4..),
        ),
        _ => return Err(DerError("unsupported time format")),
    };
    let rest = rest.ok_or(DerError("bad time"))?;
    let field = |i: usize| -> Result<i64, DerError> {
        rest.get(i..i + 2)
            .and_then(|s| s.parse().ok())
            .ok_or(DerError("bad time field"))
    };
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(DerError("time out of range"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The UTC calendar date and time of Unix time `unix`:
/// (year, month, day, hour, minute, second). Inverse of `days_from_civil`.
pub fn civil_from_unix(unix: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let utc = Tlv {
            tag: UTC_TIME,
            content: b"700101000000Z",
            whole: &[],
        };
        assert_eq!(parse_time(&utc).unwrap(), 0);
        let gen = Tlv {
            tag: GENERALIZED_TIME,
            content: b"20261125133328Z",
            whole: &[],
        };
        assert_eq!(parse_time(&gen).unwrap(), 1_795_613_608);
        let bad = Tlv {
            tag: UTC_TIME,
            content: b"701301000000Z",
            whole: &[],
        };
        assert!(parse_time(&bad).is_err());
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(civil_from_unix(1_795_613_608), (2026, 11, 25, 13, 33, 28));
        for unix in [0i64, 951_782_400, 4_102_444_799, 1_795_613_608] {
            let (y, mo, d, h, mi, s) = civil_from_unix(unix);
            assert_eq!(
                days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s,
                unix
            );
        }
    }

    #[test]
    fn tlv_bounds() {
        let mut input: &[u8] = &[0x30, 0x03, 1, 2, 3, 0xff];
        let t = read_tlv(&mut input).unwrap();
        assert_eq!(
            (t.tag, t.content, t.whole.len(), input),
            (0x30, &[1u8, 2, 3][..], 5, &[0xffu8][..])
        );
        for bad in [
            &[0x30u8, 0x05, 1][..],
            &[0x30, 0x81],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[],
        ] {
            let mut i = bad;
            assert!(read_tlv(&mut i).is_err());
        }
        let mut long: &[u8] = &[0x04, 0x81, 0x02, 9, 9];
        assert_eq!(read_tlv(&mut long).unwrap().content, &[9, 9]);
    }
}
