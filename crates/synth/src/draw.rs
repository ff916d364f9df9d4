//! Drawing the synthetic pictures: one object whose shape, colour and
//! texture identify the class, at a random position, scale and rotation,
//! over a gradient background with noise and low-saturation distractors.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Shapes, in class order.
pub const SHAPES: [&str; 8] = [
    "disc", "square", "triangle", "cross", "ring", "star", "crescent", "frame",
];
/// Hue names for the 12 hues 30 degrees apart.
pub const HUES: [&str; 12] = [
    "red", "orange", "yellow", "lime", "green", "teal", "cyan", "azure", "blue", "violet",
    "magenta", "rose",
];
/// Object textures.
pub const TEXTURES: [&str; 3] = ["plain", "striped", "checkered"];
/// Background styles (the fourth appearance dimension, for many classes).
pub const BACKGROUNDS: [&str; 4] = [
    "",
    "on dark ground",
    "on light ground",
    "on speckled ground",
];

/// What identifies a class visually.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appearance {
    pub shape: usize,
    pub hue: usize,
    pub texture: usize,
    pub background: usize,
}

/// Number of classes with a distinct appearance; beyond it appearances repeat.
pub const DISTINCT_APPEARANCES: usize = 8 * 12 * 3 * 4;

impl Appearance {
    /// The appearance of class `class` (by ILSVRC id order position, any
    /// injective numbering works). Small class counts get distinct shapes
    /// and distinct hues.
    pub fn of_class(class: usize) -> Appearance {
        let c = class % DISTINCT_APPEARANCES;
        // c = 288 * background + 8 * (12 * a + b) + r; for a fixed shape r,
        // (b, a) -> (hue, texture) is one-to-one (7 is prime to 12), and
        // classes sharing a shape differ in hue and texture at once.
        let r = c % 8;
        let q = (c / 8) % 36;
        let (a, b) = (q / 12, q % 12);
        Appearance {
            shape: r,
            hue: (5 * r + 7 * b) % 12,
            texture: (r + a + b) % 3,
            background: c / 288,
        }
    }

    /// Words describing the class, e.g. `striped blue ring`.
    pub fn words(&self) -> String {
        let mut w = String::new();
        if self.texture > 0 {
            w.push_str(TEXTURES[self.texture]);
            w.push(' ');
        }
        w.push_str(&format!("{} {}", HUES[self.hue], SHAPES[self.shape]));
        if self.background > 0 {
            w.push(' ');
            w.push_str(BACKGROUNDS[self.background]);
        }
        w
    }
}

/// HSV (h in degrees, s and v in 0..1) to RGB in 0..255.
fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

/// Whether local point (u, v) (object radius 1) is inside `shape`.
#[inline]
fn inside(shape: usize, u: f32, v: f32) -> bool {
    match shape {
        0 => u * u + v * v < 0.9,
        1 => u.abs() < 0.7 && v.abs() < 0.7,
        2 => {
            let s3 = 1.732_050_8_f32;
            v > -0.5 && s3 * u + v < 1.0 && -s3 * u + v < 1.0
        }
        3 => (u.abs() < 0.28 && v.abs() < 0.95) || (v.abs() < 0.28 && u.abs() < 0.95),
        4 => {
            let r2 = u * u + v * v;
            r2 < 0.9 && r2 > 0.3
        }
        5 => {
            let r = (u * u + v * v).sqrt();
            let a = v.atan2(u);
            r < 0.55 + 0.4 * (5.0 * a).cos()
        }
        6 => u * u + v * v < 0.9 && (u - 0.45) * (u - 0.45) + v * v > 0.5,
        _ => {
            let m = u.abs().max(v.abs());
            m < 0.9 && m > 0.55
        }
    }
}

/// Tiny per-pixel noise source.
struct XorShift(u32);

impl XorShift {
    #[inline]
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// Renders an RGB (HWC, 8-bit) picture of class appearance `app`.
pub fn render(app: Appearance, width: u32, height: u32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut img = vec![0u8; w * h * 3];
    // Global brightness change, applied to every colour drawn.
    let gain: f32 = rng.random_range(0.8..1.15);
    let lit = |c: [f32; 3]| c.map(|v| v * gain);

    // Background: gradient between two low-saturation colours, plus noise.
    let (vlo, vhi) = match app.background {
        1 => (0.08, 0.3),
        2 => (0.65, 0.95),
        _ => (0.2, 0.8),
    };
    let c0 = lit(hsv(
        rng.random_range(0.0..360.0),
        rng.random_range(0.0..0.3),
        rng.random_range(vlo..vhi),
    ));
    let c1 = lit(hsv(
        rng.random_range(0.0..360.0),
        rng.random_range(0.0..0.3),
        rng.random_range(vlo..vhi),
    ));
    let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let (gx, gy) = (angle.cos() / w as f32, angle.sin() / h as f32);
    let noise_amp: f32 = gain
        * if app.background == 3 {
            70.0
        } else {
            rng.random_range(4.0..20.0)
        };
    let mut noise = XorShift(rng.random::<u32>() | 1);
    let d = [c1[0] - c0[0], c1[1] - c0[1], c1[2] - c0[2]];
    let noise_scale = noise_amp / 255.0;
    // + 0.5 rounds; `as u8` saturates to 0..=255.
    let base = [c0[0] + 0.5, c0[1] + 0.5, c0[2] + 0.5];
    for (y, row) in img.chunks_exact_mut(w * 3).enumerate() {
        let t_row = y as f32 * gy * 0.5 + 0.5;
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let t = (x as f32 * gx * 0.5 + t_row).clamp(0.0, 1.0);
            let n = ((noise.next() >> 24) as f32 - 127.5) * noise_scale;
            px[0] = (base[0] + d[0] * t + n) as u8;
            px[1] = (base[1] + d[1] * t + n) as u8;
            px[2] = (base[2] + d[2] * t + n) as u8;
        }
    }

    let short = w.min(h) as f32;
    // Distractors: small low-saturation blobs.
    for _ in 0..rng.random_range(2..6) {
        let col = quantise(lit(hsv(
            rng.random_range(0.0..360.0),
            rng.random_range(0.0..0.2),
            rng.random_range(0.1..0.95),
        )));
        let r = short * rng.random_range(0.03..0.1);
        let cx = rng.random_range(0.0..w as f32);
        let cy = rng.random_range(0.0..h as f32);
        let sx = rng.random_range(0.5..1.5f32);
        fill(
            &mut img,
            w,
            h,
            cx,
            cy,
            r * 1.6,
            |dx, dy| (dx / (r * sx)).powi(2) + (dy * sx / r).powi(2) < 1.0,
            |_, _| col,
        );
    }

    // The object.
    let base_hue = app.hue as f32 * 30.0 + rng.random_range(-8.0..8.0);
    let main = lit(hsv(
        base_hue,
        rng.random_range(0.7..1.0),
        rng.random_range(0.75..1.0),
    ));
    let dark = quantise([main[0] * 0.35, main[1] * 0.35, main[2] * 0.35]);
    let main = quantise(main);
    let radius = short * rng.random_range(0.2..0.4);
    let cx = w as f32 * rng.random_range(0.3..0.7);
    let cy = h as f32 * rng.random_range(0.3..0.7);
    let rot: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let (cs, sn) = (rot.cos(), rot.sin());
    let freq: f32 = rng.random_range(3.0..5.0);
    let texture = app.texture;
    let shape = app.shape;
    let local = move |dx: f32, dy: f32| {
        let u = (cs * dx + sn * dy) / radius;
        let v = (-sn * dx + cs * dy) / radius;
        (u, v)
    };
    fill(
        &mut img,
        w,
        h,
        cx,
        cy,
        radius * 1.1,
        |dx, dy| {
            let (u, v) = local(dx, dy);
            inside(shape, u, v)
        },
        |dx, dy| {
            let (u, v) = local(dx, dy);
            let on = match texture {
                0 => true,
                1 => (u * freq * std::f32::consts::PI).sin() > 0.0,
                _ => ((u * freq).floor() as i32 + (v * freq).floor() as i32) % 2 == 0,
            };
            if on {
                main
            } else {
                dark
            }
        },
    );
    img
}

/// Rounds a colour to 8 bits (saturating).
fn quantise(c: [f32; 3]) -> [u8; 3] {
    c.map(|v| (v + 0.5) as u8)
}

/// Paints `colour(dx, dy)` where `mask(dx, dy)` holds, within `reach` of
/// (cx, cy); dx, dy are offsets from the centre.
#[allow(clippy::too_many_arguments)]
fn fill(
    img: &mut [u8],
    w: usize,
    h: usize,
    cx: f32,
    cy: f32,
    reach: f32,
    mask: impl Fn(f32, f32) -> bool,
    colour: impl Fn(f32, f32) -> [u8; 3],
) {
    let x0 = (cx - reach).floor().max(0.0) as usize;
    let x1 = ((cx + reach).ceil().max(0.0) as usize).min(w);
    let y0 = (cy - reach).floor().max(0.0) as usize;
    let y1 = ((cy + reach).ceil().max(0.0) as usize).min(h);
    for y in y0..y1 {
        for x in x0..x1 {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            if mask(dx, dy) {
                let c = colour(dx, dy);
                let p = (y * w + x) * 3;
                img[p..p + 3].copy_from_slice(&c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn appearances_are_distinct_up_to_the_limit() {
        let mut seen = std::collections::HashSet::new();
        for c in 0..DISTINCT_APPEARANCES {
            let a = Appearance::of_class(c);
            assert!(
                seen.insert((a.shape, a.hue, a.texture, a.background)),
                "class {c}"
            );
        }
        // Ten classes: the two that share a shape differ in hue and texture.
        for (x, y) in [(0, 8), (1, 9)] {
            let (a, b) = (Appearance::of_class(x), Appearance::of_class(y));
            assert_eq!(a.shape, b.shape);
            assert!(a.hue != b.hue && a.texture != b.texture);
        }
    }

    #[test]
    fn render_is_deterministic_and_sized() {
        let app = Appearance::of_class(5);
        let a = render(app, 33, 21, &mut ChaCha8Rng::seed_from_u64(3));
        let b = render(app, 33, 21, &mut ChaCha8Rng::seed_from_u64(3));
        let c = render(app, 33, 21, &mut ChaCha8Rng::seed_from_u64(4));
        assert_eq!(a.len(), 33 * 21 * 3);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
