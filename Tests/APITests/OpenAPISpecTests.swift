@testable import API
import Foundation
import NIOHTTP1
import Testing
import Yams

/// docs/api.yaml is the contract: every documented path and method answers its
/// documented status over the real socket, with a body matching its schema, and
/// nothing undocumented is served.
struct OpenAPISpecTests {
    static let specPath = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/api.yaml").path

    struct Operation: CustomStringConvertible {
        var path: String
        var method: String
        var spec: [String: Any]
        var description: String { "\(method.uppercased()) \(path)" }
    }

    let root: [String: Any]
    let operations: [Operation]

    init() throws {
        let text = try String(contentsOfFile: Self.specPath, encoding: .utf8)
        root = try #require(try Yams.load(yaml: text) as? [String: Any])
        let paths = try #require(root["paths"] as? [String: Any])
        var operations: [Operation] = []
        for (path, item) in paths {
            for (method, spec) in try #require(item as? [String: Any]) {
                operations.append(Operation(path: path, method: method, spec: try #require(spec as? [String: Any])))
            }
        }
        self.operations = operations.sorted { $0.description < $1.description }
    }

    @Test func specAndRouterListTheSameEndpoints() throws {
        #expect(root["openapi"] as? String == "3.0.3")
        let documented = Set(operations.map { "\($0.method.uppercased()) \($0.path)" })
        let served = Set(APIRouter.standard.routes.map { "\($0.method.rawValue) /\($0.name)" })
        #expect(documented == served)
        #expect(documented.count == 12)
    }

    @Test func everyDocumentedOperationAnswersItsDocumentedStatus() throws {
        for op in operations {
            let responses = try #require(op.spec["responses"] as? [String: Any], "\(op)")
            let successes = responses.keys.compactMap(Int.init).filter { (200..<300).contains($0) }.sorted()
            let notImplemented = op.spec["x-not-implemented"] as? Bool == true
            let expected = try #require(notImplemented ? 501 : successes.first, "\(op) documents no success")
            #expect(responses[String(expected)] != nil, "\(op) does not document \(expected)")

            // Fresh per operation: a shutdown must not spoil the next pause. The VMM
            // implements snapshot and restore; the plain fake answers them 501.
            try withServer(SnapshottingVM()) { s in
                // The VM starts Running; resuming needs a paused one.
                if op.description == "PUT /vm.resume" { try s.client.pause() }
                let response = try s.client.send(method: HTTPMethod(rawValue: op.method.uppercased()),
                                                 target: "/api/v1" + op.path, body: try exampleBody(op))
                #expect(response.status == expected, "\(op): \(String(decoding: response.body, as: UTF8.self))")
                let schema = try responseSchema(responses[String(expected)])
                if let schema {
                    let json = try JSONSerialization.jsonObject(with: response.body, options: [.fragmentsAllowed])
                    let problems = validate(json, against: schema, at: "body")
                    #expect(problems.isEmpty, "\(op): \(problems)")
                } else {
                    #expect(response.body.isEmpty, "\(op) answered a body its spec does not have")
                }
            }
        }
    }

    @Test func documentedBodiesAreRequiredAnd400IsDocumented() throws {
        try withServer { s in
            for op in operations where op.spec["requestBody"] != nil {
                let responses = try #require(op.spec["responses"] as? [String: Any])
                #expect(responses["400"] != nil, "\(op)")
                let response = try s.client.send(method: .PUT, target: "/api/v1" + op.path, body: Data("{}".utf8))
                #expect(response.status == 400, "\(op)")
            }
        }
    }

    @Test func otherMethodsAre405WithTheDocumentedAllow() throws {
        try withServer { s in
            let byPath = Dictionary(grouping: operations, by: \.path)
            for (path, ops) in byPath {
                let allowed = Set(ops.map { $0.method.uppercased() })
                for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] where !allowed.contains(method) {
                    let response = try s.client.send(method: HTTPMethod(rawValue: method), target: "/api/v1" + path)
                    #expect(response.status == 405, "\(method) \(path)")
                    #expect(Set(response.header("Allow")?.components(separatedBy: ", ") ?? []) == allowed)
                    #expect(ops.allSatisfy { ($0.spec["responses"] as? [String: Any])?["405"] != nil })
                }
            }
            #expect(s.fake.calls.isEmpty)
        }
    }

    @Test func undocumentedPathsAre404() throws {
        try withServer { s in
            // Cloud Hypervisor endpoints skiff does not serve, and plain nonsense.
            for path in ["/api/v1/vm.create", "/api/v1/vm.boot", "/api/v1/vm.add-disk", "/api/v1/vm.resize",
                         "/api/v1/vm.nothing", "/api/v2/vm.info", "/vm.info", "/api/v1"] {
                #expect(!operations.contains { "/api/v1" + $0.path == path })
                for method in [HTTPMethod.GET, .PUT] {
                    let response = try s.client.send(method: method, target: path)
                    #expect(response.status == 404, "\(method) \(path)")
                }
            }
        }
    }

    // MARK: Reading the spec

    private func exampleBody(_ op: Operation) throws -> Data? {
        guard let body = op.spec["requestBody"] as? [String: Any] else { return nil }
        let json = (body["content"] as? [String: Any])?["application/json"] as? [String: Any]
        let example = try #require(json?["example"], "\(op) has a request body without an example")
        return try JSONSerialization.data(withJSONObject: example)
    }

    /// The JSON schema of a response (following `$ref`s), or nil for a response without a body.
    private func responseSchema(_ response: Any?) throws -> [String: Any]? {
        var response = try #require(response as? [String: Any])
        if let ref = response["$ref"] as? String { response = try #require(resolve(ref)) }
        let json = (response["content"] as? [String: Any])?["application/json"] as? [String: Any]
        return json?["schema"] as? [String: Any]
    }

    private func resolve(_ ref: String) -> [String: Any]? {
        var node: Any? = root
        for part in ref.dropFirst(2).split(separator: "/") { node = (node as? [String: Any])?[String(part)] }
        return node as? [String: Any]
    }

    /// A small JSON-schema check: types, required and undocumented keys, enums, arrays, maps.
    private func validate(_ value: Any, against schema: [String: Any], at path: String) -> [String] {
        if let ref = schema["$ref"] as? String {
            guard let resolved = resolve(ref) else { return ["\(path): unresolved \(ref)"] }
            return validate(value, against: resolved, at: path)
        }
        if value is NSNull { return schema["nullable"] as? Bool == true ? [] : ["\(path): null"] }
        switch schema["type"] as? String {
        case "object":
            guard let object = value as? [String: Any] else { return ["\(path): not an object"] }
            let properties = schema["properties"] as? [String: Any] ?? [:]
            var problems = (schema["required"] as? [String] ?? []).filter { object[$0] == nil }.map { "\(path).\($0): missing" }
            for (key, item) in object {
                if let sub = properties[key] as? [String: Any] {
                    problems += validate(item, against: sub, at: "\(path).\(key)")
                } else if let extra = schema["additionalProperties"] as? [String: Any] {
                    problems += validate(item, against: extra, at: "\(path).\(key)")
                } else {
                    problems.append("\(path).\(key): not in the spec")
                }
            }
            return problems
        case "array":
            guard let array = value as? [Any] else { return ["\(path): not an array"] }
            let items = schema["items"] as? [String: Any] ?? [:]
            return array.enumerated().flatMap { validate($1, against: items, at: "\(path)[\($0)]") }
        case "string":
            guard let string = value as? String else { return ["\(path): not a string"] }
            if let options = schema["enum"] as? [String], !options.contains(string) { return ["\(path): \(string) not in enum"] }
            return []
        case "integer":
            return value is Int || value is Int64 || value is UInt64 ? [] : ["\(path): not an integer"]
        case "boolean":
            return value is Bool ? [] : ["\(path): not a boolean"]
        default:
            return ["\(path): schema without a type"]
        }
    }
}
