//! Numeric field values: `1i`, `1u` and floats, read straight from the
//! bytes of a line. Hand-written because the common shapes (`-?d+i`, short
//! decimals) are read in one pass without `str::parse` (see
//! [`fast_float`]); `benches/lineproto.rs` measures it.

use super::parse::FieldValue;

pub(super) enum NumberError {
    Invalid(&'static str),
    OutOfRange(&'static str),
}

/// Parses a numeric field value: `1i` integer, `1u` unsigned, else a float.
#[inline]
pub(super) fn number(raw: &str) -> Result<FieldValue<'static>, NumberError> {
    let b = raw.as_bytes();
    let (last, digits) = b.split_last().expect("a value is not empty");
    match last {
        b'i' => match signed(digits) {
            Digits::Value(v) => Ok(FieldValue::Integer(v)),
            Digits::Invalid => Err(NumberError::Invalid("integer")),
            Digits::Overflow => Err(NumberError::OutOfRange("integer")),
        },
        b'u' => match unsigned(digits) {
            Digits::Value(v) => Ok(FieldValue::UInteger(v)),
            Digits::Invalid => Err(NumberError::Invalid("unsigned")),
            Digits::Overflow => Err(NumberError::OutOfRange("unsigned")),
        },
        _ => parse_float(raw).map(FieldValue::Float),
    }
}

/// An integer as written, read in one pass.
pub(super) enum Digits<T> {
    Value(T),
    /// Not `-?[0-9]+` (or `[0-9]+` for unsigned).
    Invalid,
    /// Well formed but out of range.
    Overflow,
}

/// `[0-9]+` as a `u64`.
#[inline]
pub(super) fn unsigned(b: &[u8]) -> Digits<u64> {
    if b.is_empty() {
        return Digits::Invalid;
    }
    let mut v: u64 = 0;
    if b.len() <= 19 {
        // Below 10^19 < 2^64: no overflow possible.
        for &c in b {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return Digits::Invalid;
            }
            v = v * 10 + u64::from(d);
        }
        return Digits::Value(v);
    }
    let mut overflow = false;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Digits::Invalid;
        }
        match v.checked_mul(10).and_then(|v| v.checked_add(u64::from(d))) {
            Some(n) => v = n,
            None => overflow = true,
        }
    }
    if overflow {
        Digits::Overflow
    } else {
        Digits::Value(v)
    }
}

/// `-?[0-9]+` as an `i64`.
#[inline]
pub(super) fn signed(b: &[u8]) -> Digits<i64> {
    let (negative, b) = match b {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, b),
    };
    match unsigned(b) {
        Digits::Value(v) if negative && v <= 1 << 63 => {
            // 2^63 wraps to i64::MIN, which is what it is negated.
            Digits::Value(0i64.wrapping_sub(v as i64))
        }
        Digits::Value(v) if !negative && v <= i64::MAX as u64 => Digits::Value(v as i64),
        Digits::Value(_) | Digits::Overflow => Digits::Overflow,
        Digits::Invalid => Digits::Invalid,
    }
}

/// Parses a float: `-?digits[.digits][(e|E)[+-]digits]`, also `1.` and `.5`.
/// Letters other than the exponent are refused before `str::parse`, so `nan`
/// and `inf` never get through; an exponent too large for `f64` is out of range.
#[inline]
pub(super) fn parse_float(raw: &str) -> Result<f64, NumberError> {
    if let Some((v, _)) = fast_float(raw.as_bytes(), 0, raw.len()) {
        return Ok(v);
    }
    if !raw
        .bytes()
        .all(|c| matches!(c, b'0'..=b'9' | b'.' | b'-' | b'+' | b'e' | b'E'))
        || raw.starts_with('+')
    {
        return Err(NumberError::Invalid("float"));
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(NumberError::OutOfRange("float")),
        Err(_) => Err(NumberError::Invalid("float")),
    }
}

/// The powers of ten that an `f64` holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Reads the common shape `-?d*(.d*)?` from `b[start..limit]` in one pass,
/// up to the `,` or space (or `limit`) that ends it; returns the value and
/// where it ends. Only when the digits make an integer mantissa of at most
/// 2^53 and there are at most 22 after the point: both are then exact in an
/// `f64`, so one correctly rounded division gives the correctly rounded result
/// (Clinger's fast path, the one `str::parse` starts with). Anything else
/// (exponents, more digits, other bytes): `None`, and the caller takes the
/// general path.
#[inline]
pub(super) fn fast_float(b: &[u8], start: usize, limit: usize) -> Option<(f64, usize)> {
    let mut i = start;
    let negative = i < limit && b[i] == b'-';
    if negative {
        i += 1;
    }
    let digits_start = i;
    let mut mantissa: u64 = 0;
    let mut point = None;
    while i < limit {
        let c = b[i];
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            // Wraps only past 19 digits, which are refused below.
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
        } else if c == b'.' && point.is_none() {
            point = Some(i);
        } else {
            break;
        }
        i += 1;
    }
    if i < limit && b[i] != b',' && b[i] != b' ' {
        return None;
    }
    let digits = i - digits_start - usize::from(point.is_some());
    let scale = point.map_or(0, |p| i - p - 1);
    if digits == 0 || digits > 19 || mantissa > 1 << 53 || scale >= POW10.len() {
        return None;
    }
    let v = mantissa as f64 / POW10[scale];
    Some((if negative { -v } else { v }, i))
}
