//! TensorFlow's record framing, in which event files are written: per
//! record, the length (u64, little-endian), its masked CRC-32C (u32), the
//! data, and the data's masked CRC-32C.

use std::io::Write;

/// TensorFlow's CRC mask: a rotated CRC plus a constant, so that the CRC
/// of data holding CRCs stays well distributed.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one record holding `data` to `out`.
pub fn write_record(out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc32c(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc32c(data).to_le_bytes())
}

/// The records of an event file's bytes, in order.
#[derive(Debug)]
pub struct Records<'a> {
    /// Each record's data.
    pub records: Vec<&'a [u8]>,
    /// Bytes of whole, intact records from the start.
    pub intact_len: usize,
    /// Why reading stopped before the end, if it did: a record cut short
    /// (a process killed while writing) or one whose checksum is wrong.
    pub damage: Option<&'static str>,
}

/// Splits `bytes` into records, stopping at the first one cut short or
/// failing its checksum (everything before it is kept).
pub fn read_records(bytes: &[u8]) -> Records<'_> {
    let mut records = Vec::new();
    let mut at = 0usize;
    let damage = loop {
        let rest = &bytes[at..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < 12 {
            break Some("a record's header is cut short");
        }
        let (len_bytes, tail) = rest.split_at(8);
        let len_crc = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
        if masked_crc32c(len_bytes) != len_crc {
            break Some("a record's length fails its checksum");
        }
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        let body = &tail[4..];
        let Some(total) = usize::try_from(len)
            .ok()
            .filter(|&l| l <= body.len().saturating_sub(4))
        else {
            break Some("a record's data is cut short");
        };
        let (data, crc) = body.split_at(total);
        if masked_crc32c(data) != u32::from_le_bytes(crc[..4].try_into().expect("4 bytes")) {
            break Some("a record's data fails its checksum");
        }
        records.push(data);
        at += 12 + total + 4;
    };
    Records {
        records,
        intact_len: at,
        damage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // The frame of an empty record as the `tensorboard` package's own
        // RecordWriter writes it (the length 0 and its masked CRC, then
        // the empty data's masked CRC).
        let mut out = Vec::new();
        write_record(&mut out, b"").unwrap();
        assert_eq!(
            out,
            [0, 0, 0, 0, 0, 0, 0, 0, 0x29, 0x03, 0x98, 0x07, 0xd8, 0xea, 0x82, 0xa2]
        );
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut_off() {
        let mut out = Vec::new();
        write_record(&mut out, b"first").unwrap();
        write_record(&mut out, &[7u8; 300]).unwrap();
        let whole = out.len();
        write_record(&mut out, b"third, cut short").unwrap();
        let r = read_records(&out);
        assert_eq!(r.records.len(), 3);
        assert!(r.damage.is_none());
        assert_eq!(r.intact_len, out.len());

        for cut in whole..out.len() {
            let r = read_records(&out[..cut]);
            assert_eq!(r.records, [&b"first"[..], &[7u8; 300][..]], "cut at {cut}");
            assert_eq!(r.intact_len, whole);
            assert!(r.damage.is_some() || cut == whole);
        }
        // A flipped bit in the second record's data ends the reading there.
        let mut bad = out.clone();
        bad[12 + 5 + 4 + 12 + 100] ^= 1;
        let r = read_records(&bad);
        assert_eq!(r.records, [&b"first"[..]]);
        assert_eq!(r.damage, Some("a record's data fails its checksum"));
        // A length claiming more than the file holds.
        let mut huge = Vec::new();
        let len = u64::MAX.to_le_bytes();
        huge.extend_from_slice(&len);
        huge.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        huge.extend_from_slice(&[0; 8]);
        assert_eq!(
            read_records(&huge).damage,
            Some("a record's data is cut short")
        );
    }
}
