//! A component built for Wassette-style hosts: its exported functions are
//! its tools, with plain WIT types and no Stockade SDK. Stockade derives
//! the tools' schemas from the WIT and converts JSON to WIT values and
//! back.

wit_bindgen::generate!({ path: "wit", world: "plain-exports" });

use exports::example::plain_exports::shapes::{Detail, Guest as Shapes, Point, Shape, Unit};

struct Component;

const SQUARE_FEET_PER_SQUARE_METRE: f64 = 10.763_910_416_709_722;

fn area_m2(shape: &Shape) -> f64 {
    match shape {
        Shape::Circle(r) => std::f64::consts::PI * r * r,
        Shape::Rectangle((w, h)) => w * h,
        Shape::Polygon(points) => {
            let n = points.len();
            let twice: f64 = (0..n)
                .map(|i| {
                    let (a, b) = (&points[i], &points[(i + 1) % n]);
                    a.x * b.y - b.x * a.y
                })
                .sum();
            twice.abs() / 2.0
        }
        Shape::Empty => 0.0,
    }
}

fn perimeter(shape: &Shape) -> f64 {
    match shape {
        Shape::Circle(r) => 2.0 * std::f64::consts::PI * r,
        Shape::Rectangle((w, h)) => 2.0 * (w + h),
        Shape::Polygon(points) => {
            let n = points.len();
            (0..n)
                .map(|i| {
                    let (a, b) = (&points[i], &points[(i + 1) % n]);
                    ((b.x - a.x).powi(2) + (b.y - a.y).powi(2)).sqrt()
                })
                .sum()
        }
        Shape::Empty => 0.0,
    }
}

impl Shapes for Component {
    fn area(shape: Shape, unit: Option<Unit>) -> f64 {
        let m2 = area_m2(&shape);
        match unit {
            Some(Unit::SquareFeet) => m2 * SQUARE_FEET_PER_SQUARE_METRE,
            Some(Unit::SquareMetres) | None => m2,
        }
    }

    fn describe(shape: Shape, detail: Detail) -> Result<String, String> {
        let kind = match &shape {
            Shape::Circle(_) => "circle",
            Shape::Rectangle(_) => "rectangle",
            Shape::Polygon(_) => "polygon",
            Shape::Empty => return Err("an empty shape has nothing to describe".to_owned()),
        };
        let mut text = kind.to_owned();
        if detail.contains(Detail::AREA) {
            text += &format!(", area {:.2}", area_m2(&shape));
        }
        if detail.contains(Detail::PERIMETER) {
            text += &format!(", perimeter {:.2}", perimeter(&shape));
        }
        Ok(text)
    }

    fn bounds(points: Vec<Point>) -> Option<(Point, Point)> {
        let first = points.first()?;
        let mut low = Point {
            x: first.x,
            y: first.y,
        };
        let mut high = Point {
            x: first.x,
            y: first.y,
        };
        for p in &points {
            low.x = low.x.min(p.x);
            low.y = low.y.min(p.y);
            high.x = high.x.max(p.x);
            high.y = high.y.max(p.y);
        }
        Some((low, high))
    }
}

impl Guest for Component {
    fn add(a: u8, b: u8) -> Result<u8, String> {
        a.checked_add(b)
            .ok_or_else(|| format!("{a} + {b} does not fit in a u8"))
    }

    fn repeat(c: char, times: u16) -> String {
        std::iter::repeat_n(c, usize::from(times)).collect()
    }
}

export!(Component);
