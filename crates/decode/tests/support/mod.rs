pub mod hostile_files;
