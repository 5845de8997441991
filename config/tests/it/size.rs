//! Sizes as people write them (`4GiB`, `800MB`) and as troupe prints them.

use troupe_config::size::{format_bytes, parse_size};

#[test]
fn sizes_parse_with_binary_and_decimal_units() {
    assert_eq!(parse_size("4GiB"), Ok(4 << 30));
    assert_eq!(parse_size("512MiB"), Ok(512 << 20));
    assert_eq!(parse_size("2G"), Ok(2 << 30));
    assert_eq!(parse_size("2g"), Ok(2 << 30));
    assert_eq!(parse_size("1000000"), Ok(1_000_000));
    assert_eq!(parse_size("800MB"), Ok(800_000_000));
    assert_eq!(parse_size(" 1.5 GiB "), Ok(3 << 29));
    assert_eq!(parse_size("17B"), Ok(17));
}

#[test]
fn bad_sizes_are_errors_naming_the_input() {
    for bad in ["", "GiB", "4 parsecs", "1.2.3G", "99999999999999999999T"] {
        let error = parse_size(bad).expect_err(bad);
        assert_eq!(error.input, bad);
        assert!(error.to_string().contains(&format!("{bad:?}")));
    }
}

#[test]
fn bytes_are_formatted_for_people() {
    assert_eq!(format_bytes(17), "17 B");
    assert_eq!(format_bytes(3 << 29), "1.50 GiB");
    assert_eq!(format_bytes(312 << 10), "312.00 KiB");
}
