//! Compiles the region decoder (`src/jpeg_region.c`) against the system's
//! libjpeg (Debian: libjpeg62-turbo-dev, libjpeg-turbo 2.1).

fn main() {
    println!("cargo:rerun-if-changed=src/jpeg_region.c");
    cc::Build::new()
        .file("src/jpeg_region.c")
        .opt_level(2)
        .warnings(true)
        .compile("jpeg_region");
    println!("cargo:rustc-link-lib=jpeg");
}
