/// One HTTP request as a handler sees it: the whole body already read (bodies here are small JSON).
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path without the query string, e.g. `/drives/rootfs`.
    public var path: String
    /// The raw query string after `?`, or nil.
    public var query: String?
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(method: String, path: String, query: String? = nil, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method; self.path = path; self.query = query; self.headers = headers; self.body = body
    }

    /// The value of query parameter `name` (`?force=1&wait=true`), undecoded.
    public func queryValue(_ name: String) -> String? {
        guard let query else { return nil }
        for pair in query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if kv.first.map(String.init) == name { return kv.count == 2 ? String(kv[1]) : "" }
        }
        return nil
    }
}

/// One HTTP response. `body` is sent as is with `contentType`.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String?
    public var body: [UInt8]
    /// Headers besides Content-Type and Content-Length (e.g. the Allow of a 405).
    public var headers: [(name: String, value: String)] = []

    public init(status: Int, contentType: String? = nil, body: [UInt8] = []) {
        self.status = status; self.contentType = contentType; self.body = body
    }

    /// 204 No Content, Firecracker's answer to every successful PUT/PATCH.
    public static let noContent = HTTPResponse(status: 204)

    /// A JSON body (already encoded).
    public static func json(_ status: Int, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", body: Array(text.utf8))
    }

    /// A plain-text body.
    public static func text(_ status: Int, _ text: String, contentType: String = "text/plain; charset=utf-8") -> HTTPResponse {
        HTTPResponse(status: status, contentType: contentType, body: Array(text.utf8))
    }

    /// The body as UTF-8 text.
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}
