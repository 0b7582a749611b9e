//! A small blocking HTTP/1.1 client for tests: works from any thread,
//! including threads that entered a network namespace, and lets tests send
//! exactly the bytes they want.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// Per-read timeout: a stuck test fails instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of a `key: value` line of an echo-backend body.
    pub fn echo_field(&self, key: &str) -> Option<String> {
        let prefix = format!("{key}: ");
        self.text()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    }
}

/// Any byte stream a request can go over (TCP, TLS).
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One keep-alive connection.
pub struct Conn {
    reader: BufReader<Box<dyn Stream>>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self::over(Box::new(stream)))
    }

    /// A connection from the local address `from` (another loopback
    /// address stands for another client).
    pub fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> io::Result<Self> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.bind(&SocketAddr::new(from, 0).into())?;
        socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self::over(Box::new(stream)))
    }

    /// A connection over an established stream (for example TLS).
    pub fn over(stream: Box<dyn Stream>) -> Self {
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// Sends bytes without reading anything.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Sends raw request bytes and reads one response.
    pub fn raw(&mut self, request: &[u8]) -> io::Result<Response> {
        self.reader.get_mut().write_all(request)?;
        read_response(&mut self.reader)
    }

    /// Sends raw request bytes and reads the response head only (its body,
    /// if any, is left unread: a streamed response stays in flight).
    pub fn head(&mut self, request: &[u8]) -> io::Result<Response> {
        self.reader.get_mut().write_all(request)?;
        read_head(&mut self.reader)
    }

    /// Reads until the server closes the connection.
    pub fn read_rest(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        self.reader.read_to_end(out)
    }

    /// `GET path` with a Host header, keeping the connection open.
    pub fn get(&mut self, host: &str, path: &str) -> io::Result<Response> {
        self.raw(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xingress-tests\r\n\r\n")
                .as_bytes(),
        )
    }
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> io::Result<Response> {
    Conn::connect(addr)?.raw(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xingress-tests\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_head(r: &mut BufReader<Box<dyn Stream>>) -> io::Result<Response> {
    let status_line = read_line(r)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Response {
        status,
        headers,
        body: Vec::new(),
    })
}

fn read_response(r: &mut BufReader<Box<dyn Stream>>) -> io::Result<Response> {
    let mut resp = read_head(r)?;
    let status = resp.status;
    if let Some(len) = resp
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        resp.body.resize(len, 0);
        r.read_exact(&mut resp.body)?;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let size =
                usize::from_str_radix(read_line(r)?.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if size == 0 {
                while !read_line(r)?.is_empty() {}
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(&mut resp.body[start..])?;
            read_line(r)?;
        }
    } else if !(100..200).contains(&status) && status != 204 && status != 304 {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}
