import FoundationEssentials
import NIOHTTP1

/// One answer of the API: a status, an optional JSON body and any extra headers.
struct APIResponse: Sendable {
    var status: HTTPResponseStatus
    var body: Data?
    var headers: [(String, String)] = []

    static let noContent = APIResponse(status: .noContent, body: nil)

    /// 200 with `value` as JSON (sorted keys, so answers are stable byte for byte).
    static func json<T: Encodable>(_ value: T) throws -> APIResponse {
        APIResponse(status: .ok, body: try JSONCoding.encoder.encode(value))
    }

    /// Every failure is `{"error": message}`, whatever produced it.
    static func error(_ status: HTTPResponseStatus, _ message: String) -> APIResponse {
        let body = (try? JSONCoding.encoder.encode(ErrorBody(error: message))) ?? Data("{}".utf8)
        return APIResponse(status: status, body: body)
    }

    static func error(_ e: ControlError) -> APIResponse {
        error(HTTPResponseStatus(statusCode: e.httpStatus), e.message)
    }
}

/// The JSON of every error answer.
public struct ErrorBody: Codable, Sendable, Equatable {
    public var error: String
    public init(error: String) { self.error = error }
}

/// The one encoder/decoder configuration shared by server and client.
enum JSONCoding {
    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    /// Decodes an untrusted body, turning decoder errors into one short line.
    static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let e as DecodingError {
            throw ControlError(.badRequest, describe(e))
        } catch {
            throw ControlError(.badRequest, "the body is not valid JSON")
        }
    }

    private static func describe(_ e: DecodingError) -> String {
        func path(_ keys: [CodingKey], _ last: CodingKey? = nil) -> String {
            let all = keys + (last.map { [$0] } ?? [])
            return all.isEmpty ? "the body" : "'" + all.map { $0.intValue.map(String.init) ?? $0.stringValue }
                .joined(separator: ".") + "'"
        }
        switch e {
        case let .keyNotFound(key, context):
            return "missing field \(path(context.codingPath, key))"
        case let .typeMismatch(_, context), let .valueNotFound(_, context):
            return "\(path(context.codingPath)) has the wrong type"
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return "the body is not valid JSON"
        case .dataCorrupted(let context):
            return "\(path(context.codingPath)) is not valid"
        @unknown default:
            return "the body is not valid JSON"
        }
    }
}
