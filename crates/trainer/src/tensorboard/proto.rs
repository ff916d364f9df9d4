//! The messages of TensorBoard's event files, as `prost` types: the subset
//! of TensorFlow's `event.proto` and `summary.proto` that a training run
//! writes. Field numbers are those of the `.proto` files, so any reader of
//! the format (TensorBoard's `EventAccumulator`, `tf.compat.v1.train.
//! summary_iterator`) decodes them.

/// `tensorflow.Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step the event belongs to.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event carries.
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// `Event.what`: the kinds of event this project writes.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// The first event of every file: `brain.Event:2`.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Scalars and images.
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// Its values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The series' name (`train/loss`).
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The value.
    #[prost(oneof = "Value", tags = "2, 4")]
    pub value: Option<Value>,
}

/// `Summary.Value.value`: the kinds of value this project writes.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// A scalar (`simple_value`).
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    /// An encoded image.
    #[prost(message, tag = "4")]
    Image(Image),
}

/// `tensorflow.Summary.Image`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    /// Height in pixels.
    #[prost(int32, tag = "1")]
    pub height: i32,
    /// Width in pixels.
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// The image as a PNG file.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}
