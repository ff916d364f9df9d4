//! `matv5::read_mat` on any bytes. Mode byte: 0, the whole file; 1, the
//! elements after a valid header; 2, the inflated content of one
//! `miCOMPRESSED` element (so that mutations reach what the zlib stream
//! holds). A file that reads is written back and must read back the same.

#![no_main]

use alexnet_fuzz::{mat_header, mat_with_compressed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = match mode % 3 {
        0 => rest.to_vec(),
        1 => {
            let mut f = mat_header();
            f.extend_from_slice(rest);
            f
        }
        _ => mat_with_compressed(rest),
    };
    let Ok(mat) = matv5::read_mat(&file) else {
        return;
    };
    let mut again = Vec::new();
    if matv5::write_mat(&mut again, &mat.variables, &matv5::WriteOptions::default()).is_ok() {
        let back = matv5::read_mat(&again).expect("what the writer wrote reads back");
        // Debug text: NaN compares equal to itself there.
        assert_eq!(
            format!("{:?}", back.variables),
            format!("{:?}", mat.variables),
            "read, written and read again"
        );
    }
});
