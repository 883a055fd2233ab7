//! Calculator and unit converter skill (wasm32-wasi command).
//! Input: argv[1], e.g. "2 * (3 + 4)", "sqrt(2)^2", "convert 5 km to miles", "100 f in c".
//! Output: one line on stdout. Exit code 2 with a message on stderr when it cannot answer.

use std::env;
use std::process;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] as char).is_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn expr(&mut self) -> Result<f64, String> {
        let mut v = self.term()?;
        loop {
            match self.peek() {
                Some(b'+') => { self.i += 1; v += self.term()?; }
                Some(b'-') => { self.i += 1; v -= self.term()?; }
                _ => return Ok(v),
            }
        }
    }
    fn term(&mut self) -> Result<f64, String> {
        let mut v = self.unary()?;
        loop {
            match self.peek() {
                Some(b'*') | Some(b'x') => { self.i += 1; v *= self.unary()?; }
                Some(b'/') => {
                    self.i += 1;
                    let d = self.unary()?;
                    if d == 0.0 { return Err("division by zero".into()); }
                    v /= d;
                }
                Some(b'%') => {
                    self.i += 1;
                    let d = self.unary()?;
                    if d == 0.0 { return Err("division by zero".into()); }
                    v %= d;
                }
                _ => return Ok(v),
            }
        }
    }
    fn unary(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(b'-') => { self.i += 1; Ok(-self.unary()?) }
            Some(b'+') => { self.i += 1; self.unary() }
            _ => self.power(),
        }
    }
    fn power(&mut self) -> Result<f64, String> {
        let base = self.atom()?;
        if self.peek() == Some(b'^') {
            self.i += 1;
            let exp = self.unary()?; // right-associative
            return Ok(base.powf(exp));
        }
        Ok(base)
    }
    fn atom(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(b'(') => {
                self.i += 1;
                let v = self.expr()?;
                if self.peek() != Some(b')') { return Err("missing )".into()); }
                self.i += 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                let start = self.i;
                while self.i < self.s.len() && (self.s[self.i].is_ascii_digit() || self.s[self.i] == b'.' || self.s[self.i] == b'_' || self.s[self.i] == b',') {
                    self.i += 1;
                }
                if self.i < self.s.len() && (self.s[self.i] == b'e' || self.s[self.i] == b'E')
                    && self.i + 1 < self.s.len() && (self.s[self.i + 1].is_ascii_digit() || self.s[self.i + 1] == b'-') {
                    self.i += 2;
                    while self.i < self.s.len() && self.s[self.i].is_ascii_digit() { self.i += 1; }
                }
                let text: String = String::from_utf8_lossy(&self.s[start..self.i]).replace(['_', ','], "");
                text.parse::<f64>().map_err(|_| format!("bad number {}", text))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() { self.i += 1; }
                let name = String::from_utf8_lossy(&self.s[start..self.i]).to_lowercase();
                match name.as_str() {
                    "pi" => return Ok(std::f64::consts::PI),
                    "e" => return Ok(std::f64::consts::E),
                    _ => {}
                }
                let arg = self.atom()?;
                match name.as_str() {
                    "sqrt" => if arg < 0.0 { Err("square root of a negative number".into()) } else { Ok(arg.sqrt()) },
                    "abs" => Ok(arg.abs()),
                    "sin" => Ok(arg.sin()),
                    "cos" => Ok(arg.cos()),
                    "tan" => Ok(arg.tan()),
                    "ln" => Ok(arg.ln()),
                    "log" => Ok(arg.log10()),
                    "exp" => Ok(arg.exp()),
                    "round" => Ok(arg.round()),
                    "floor" => Ok(arg.floor()),
                    "ceil" => Ok(arg.ceil()),
                    _ => Err(format!("unknown function {}", name)),
                }
            }
            Some(c) => Err(format!("unexpected '{}'", c as char)),
            None => Err("expression ends too early".into()),
        }
    }
}

pub fn eval(text: &str) -> Result<f64, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let v = p.expr()?;
    if p.peek().is_some() {
        return Err(format!("unexpected text: {}", &text[p.i..]));
    }
    if !v.is_finite() {
        return Err("the result is not a finite number".into());
    }
    Ok(v)
}

// (names, dimension, factor to the dimension's base unit)
const UNITS: &[(&[&str], &str, f64)] = &[
    (&["m", "meter", "meters", "metre", "metres"], "length", 1.0),
    (&["km", "kilometer", "kilometers", "kilometre", "kilometres"], "length", 1000.0),
    (&["cm", "centimeter", "centimeters"], "length", 0.01),
    (&["mm", "millimeter", "millimeters"], "length", 0.001),
    (&["mi", "mile", "miles"], "length", 1609.344),
    (&["yd", "yard", "yards"], "length", 0.9144),
    (&["ft", "foot", "feet"], "length", 0.3048),
    (&["in", "inch", "inches"], "length", 0.0254),
    (&["kg", "kilogram", "kilograms", "kilo", "kilos"], "mass", 1.0),
    (&["g", "gram", "grams"], "mass", 0.001),
    (&["mg", "milligram", "milligrams"], "mass", 0.000001),
    (&["t", "tonne", "tonnes"], "mass", 1000.0),
    (&["lb", "lbs", "pound", "pounds"], "mass", 0.45359237),
    (&["oz", "ounce", "ounces"], "mass", 0.028349523125),
    (&["l", "liter", "liters", "litre", "litres"], "volume", 1.0),
    (&["ml", "milliliter", "milliliters"], "volume", 0.001),
    (&["gal", "gallon", "gallons"], "volume", 3.785411784),
    (&["cup", "cups"], "volume", 0.2365882365),
    (&["s", "sec", "second", "seconds"], "time", 1.0),
    (&["min", "minute", "minutes"], "time", 60.0),
    (&["h", "hr", "hour", "hours"], "time", 3600.0),
    (&["day", "days"], "time", 86400.0),
    (&["week", "weeks"], "time", 604800.0),
    (&["b", "byte", "bytes"], "data", 1.0),
    (&["kb", "kilobyte", "kilobytes"], "data", 1e3),
    (&["mb", "megabyte", "megabytes"], "data", 1e6),
    (&["gb", "gigabyte", "gigabytes"], "data", 1e9),
    (&["tb", "terabyte", "terabytes"], "data", 1e12),
    (&["kib"], "data", 1024.0),
    (&["mib"], "data", 1048576.0),
    (&["gib"], "data", 1073741824.0),
    (&["m/s", "mps"], "speed", 1.0),
    (&["km/h", "kmh", "kph"], "speed", 1.0 / 3.6),
    (&["mph"], "speed", 0.44704),
    (&["knot", "knots", "kn"], "speed", 0.514444),
];

fn unit(name: &str) -> Option<(&'static str, f64, &'static str)> {
    let n = name.trim().trim_end_matches('.').to_lowercase();
    for (names, dim, f) in UNITS {
        if names.contains(&n.as_str()) {
            return Some((dim, *f, names[0]));
        }
    }
    None
}

fn temperature(name: &str) -> Option<char> {
    match name.trim().to_lowercase().trim_start_matches('°') {
        "c" | "celsius" => Some('C'),
        "f" | "fahrenheit" => Some('F'),
        "k" | "kelvin" => Some('K'),
        _ => None,
    }
}

fn to_kelvin(v: f64, u: char) -> f64 {
    match u { 'C' => v + 273.15, 'F' => (v - 32.0) * 5.0 / 9.0 + 273.15, _ => v }
}

fn from_kelvin(v: f64, u: char) -> f64 {
    match u { 'C' => v - 273.15, 'F' => (v - 273.15) * 9.0 / 5.0 + 32.0, _ => v }
}

pub fn format_number(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{:.10}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// "5 km to miles" -> Some(Ok("5 km = 3.1068559612 mi"))
fn convert(text: &str) -> Option<Result<String, String>> {
    let lower = text.to_lowercase();
    let (left, right) = [" to ", " in ", " into ", " as "]
        .iter()
        .find_map(|sep| lower.rfind(sep).map(|k| (&text[..k], &text[k + sep.len()..])))?;
    let left = left.trim();
    let split = left.rfind(|c: char| c.is_ascii_digit() || c == ')' || c == ' ')?;
    let (amount_text, from_unit) = left.split_at(split + 1);
    let from_unit = from_unit.trim();
    let to_unit = right.trim().trim_end_matches('?');
    let (amount_text, from_unit) = if from_unit.is_empty() {
        let k = amount_text.trim().rfind(' ')?;
        (&amount_text[..k], amount_text.trim()[k..].trim())
    } else {
        (amount_text, from_unit)
    };
    let amount = match eval(amount_text) { Ok(v) => v, Err(_) => return None };
    if let (Some(a), Some(b)) = (temperature(from_unit), temperature(to_unit)) {
        let out = from_kelvin(to_kelvin(amount, a), b);
        return Some(Ok(format!("{} °{} = {} °{}", format_number(amount), a, format_number(out), b)));
    }
    let (da, fa, na) = unit(from_unit)?;
    let (db, fb, nb) = match unit(to_unit) { Some(u) => u, None => return Some(Err(format!("unknown unit {}", to_unit))) };
    if da != db {
        return Some(Err(format!("cannot convert {} ({}) to {} ({})", na, da, nb, db)));
    }
    let out = amount * fa / fb;
    Some(Ok(format!("{} {} = {} {}", format_number(amount), na, format_number(out), nb)))
}

pub fn answer(input: &str) -> Result<String, String> {
    let mut text = input.trim().trim_end_matches(|c| c == '?' || c == '.' || c == '!').trim().to_string();
    for prefix in ["what is", "what's", "calculate", "compute", "convert", "how much is", "how many"] {
        if text.to_lowercase().starts_with(prefix) {
            text = text[prefix.len()..].trim().to_string();
        }
    }
    if text.is_empty() {
        return Err("give me an expression like 2*(3+4) or a conversion like 5 km to miles".into());
    }
    if let Some(k) = text.find("% of ") {
        let (a, b) = (eval(&text[..k])?, eval(&text[k + 5..])?);
        return Ok(format!("{} = {}", text, format_number(a / 100.0 * b)));
    }
    if let Some(result) = convert(&text) {
        return result;
    }
    eval(&text).map(|v| format!("{} = {}", text, format_number(v)))
}

fn main() {
    let input = env::args().nth(1).unwrap_or_default();
    match answer(&input) {
        Ok(line) => println!("{}", line),
        Err(msg) => {
            eprintln!("cannot compute: {}", msg);
            process::exit(2);
        }
    }
}
