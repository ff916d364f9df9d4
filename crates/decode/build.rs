//! Compiles the window decoder (`src/jpeg_window.c`) against the system's
//! libjpeg (Debian: libjpeg62-turbo-dev, libjpeg-turbo 2.1).

fn main() {
    println!("cargo:rerun-if-changed=src/jpeg_window.c");
    cc::Build::new()
        .file("src/jpeg_window.c")
        .opt_level(2)
        .warnings(true)
        .compile("jpeg_window");
    println!("cargo:rustc-link-lib=jpeg");
}
