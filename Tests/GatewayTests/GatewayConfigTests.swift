import Foundation
import Fusion
import Gateway
import Providers
import GatewayCore
import HTTPServer
import Testing
import Web

@Suite struct GatewayConfigTests {
    static let example = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/config/example.yaml").path

    /// An empty file, or one of comments only (a commented-out copy of the example), is every
    /// default, like a file that sets nothing it need not: not an error about a key it lacks.
    /// The bound on bodies being received holds one whole body at least: below `max_body_bytes`
    /// it is refused; raised with it unless given (review 67 #3: a body between the two was a
    /// 503 "retry shortly" for ever).
    @Test func theBodiesBoundHoldsAWholeBody() throws {
        #expect { try GatewayConfig.parse(yaml: "server: {max_body_bytes: 4194304, max_receiving_body_bytes: 1048576}") } throws: { error in
            "\(error)".contains("max_receiving_body_bytes") && "\(error)".contains("below max_body_bytes")
        }
        #expect(try GatewayConfig.parse(yaml: "server: {max_body_bytes: 536870912}").server.maxReceivingBodyBytes == 536_870_912)
        #expect(try GatewayConfig.parse(yaml: "{}").server.maxReceivingBodyBytes == 256 << 20)
        #expect(try GatewayConfig.parse(yaml: "server: {max_receiving_body_bytes: 33554432}").server.maxReceivingBodyBytes == 32 << 20)
    }

    @Test func integersAreDecimalDigits() throws {
        #expect(try GatewayConfig.parse(yaml: "server: {port: 0}\n").server.port == 0)
        #expect(try GatewayConfig.parse(yaml: "server: {port: 8080, header_timeout_ms: 10}\n").server.port == 8080)
        for text in ["00", "010", "+1", "1_0", "1:00", "0x1", "0o17", "1e3", "1.0", "'1'"] {
            #expect(throws: (any Error).self, "\(text)") { try GatewayConfig.parse(yaml: "server: {max_hops: \(text)}\n") }
        }
        #expect(try GatewayConfig.parse(yaml: "server: {max_hops: 7}\n").server.maxHops == 7)
    }

    /// Addresses to listen on pass, IPv4 and IPv6.
    @Test func listenAddressesAreIPAddresses() throws {
        for host in ["127.0.0.1", "0.0.0.0", "::", "::1", "10.1.2.3"] {
            #expect(try GatewayConfig.parse(yaml: "server: {host: '\(host)'}").server.host == host)
        }
    }

    /// Prices as people write them pass.
    @Test func pricesArePlainDecimals() throws {
        for (text, value) in [("10", 10.0), ("2.5", 2.5), ("0.15", 0.15), ("1e-3", 0.001), (".5", 0.5), ("0", 0)] {
            let config = try GatewayConfig.parse(yaml: "providers: {p: {kind: openai, base_url: 'http://x.example/v1'}}\nprices: {p/a: {input: \(text), output: 1}}")
            #expect(config.prices.price(of: "p/a")?.inputPerMillion == value, "\(text)")
        }
    }

    /// An alias anywhere is refused before anything is composed, naming its line: nested anchors
    /// used as a key ran the composer's duplicate check for half an hour on 400 bytes (review
    /// 121 #1). Bounded in time by the refusal itself: this finishes at once.
    @Test func aliasesAreRefusedBeforeComposing() {
        var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
        for level in 1...9 { bomb += "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 9).joined(separator: ", ") + "]\n" }
        bomb += "z: {? *a9 : 1}\n"
        for yaml in [bomb, "server: &s {port: 8080}\nfusion: *s\n", "providers:\n  a: {kind: openai, base_url: 'http://x/v1'}\nkeys: [*k]\n"] {
            #expect { try GatewayConfig.parse(yaml: yaml) } throws: { error in
                "\(error)".contains("an alias")
            }
        }
        // An asterisk or ampersand inside a value is no alias.
        #expect(throws: Never.self) { try GatewayConfig.parse(yaml: "fusion:\n  outer_model: 'sim/a&b*c'\n  presets:\n    p: {analysis_models: ['sim/*x', sim/&y]}\n") }
    }

    @Test func anEmptyConfigIsTheDefaults() throws {
        let empty = try GatewayConfig.parse(yaml: "{}")
        for text in ["", "# all commented out\n# server:\n", "\n\n"] {
            let config = try GatewayConfig.parse(yaml: text)
            #expect(config.providers.keys.sorted() == empty.providers.keys.sorted() && config.fusion == empty.fusion
                    && config.simulatedModels == empty.simulatedModels && config.server.port == empty.server.port, "\(text.debugDescription)")
        }
    }

    @Test func theDocumentedExampleLoads() throws {
        let config = try GatewayConfig.load(path: Self.example)
        #expect(config.server.port == 8080)
        #expect(config.server.limits.maxHeaderBytes == 32768)
        #expect(config.server.apiKeysEnvironmentVariable == "FUSION_GATEWAY_KEYS")
        #expect(try config.gatewayKeys(environment: ["FUSION_GATEWAY_KEYS": " k1, k2 ,"]) == ["k1", "k2"])
        // A line end (a key written to a file with `echo`) is not part of a key.
        #expect(try config.gatewayKeys(environment: ["FUSION_GATEWAY_KEYS": "k1,k2\r\n"]) == ["k1", "k2"])
        // Fails closed: the named variable unset or empty is an error, never an open gateway.
        #expect(throws: ConfigError.self) { try config.gatewayKeys(environment: [:]) }
        #expect(throws: ConfigError.self) { try config.gatewayKeys(environment: ["FUSION_GATEWAY_KEYS": " , "]) }
        // Keys written in the file: trimmed; an empty one or an unexpanded template variable is
        // refused, naming the entry, never a key anyone can present (review 52B #1).
        #expect(try GatewayConfig.parse(yaml: "server: {api_keys: [' sk-one ', sk-two]}").server.apiKeys == ["sk-one", "sk-two"])
        for bad in ["server: {api_keys: ['']}", "server: {api_keys: [sk-one, '  ']}", "server: {api_keys: ['${GATEWAY_KEY}']}"] {
            #expect { try GatewayConfig.parse(yaml: bad) } throws: { error in
                "\(error)".contains("server.api_keys[") && !"\(error)".contains("sk-one")
            }
        }
        #expect(config.server.maxHops == 4 && config.server.corsAllowOrigins.isEmpty)
        #expect(config.upstream.keepAliveIntervalMilliseconds == 5000)
        #expect(config.simulatedModels)
        #expect(config.defaultProvider == "openrouter")
        #expect(config.providers["openrouter"]?.baseURL == "https://openrouter.ai/api/v1")
        #expect(config.providers["openrouter"]?.apiKeyEnvironmentVariable == "OPENROUTER_API_KEY")
        #expect(config.providers["openrouter"]?.headers["X-Title"] == "fusion-gateway")
        #expect(config.providers["openai"]?.models == ["gpt-4o-mini", "gpt-4.1"])
        #expect(config.providers["local"]?.apiKeyEnvironmentVariable == nil)
        #expect(config.providers["openai"]?.maxTokensField == .maxCompletionTokens)
        #expect(config.providers["local"]?.maxTokensField == .maxTokens, "the default")
        let fusion = try #require(config.fusion)
        #expect(fusion.outerModel == "openrouter/anthropic/claude-opus-4.5")
        #expect(fusion.defaultPreset == "quality")
        #expect(fusion.presets["quality"]?.analysisModels.count == 3)
        #expect(fusion.presets["budget"]?.judge == "openrouter/openai/gpt-4o-mini")
        #expect(fusion.judgeFallbackModel == "openrouter/openai/gpt-4o-mini")
        #expect(fusion.memberTimeoutMilliseconds == 120_000 && fusion.judgeTimeoutMilliseconds == 180_000)
        #expect(fusion.defaultMaxTokens == 4096)
        #expect(fusion.panelContext == .conversation)
        #expect(fusion.presets["fast"]?.minAnswers == 2 && fusion.presets["fast"]?.graceMilliseconds == 1_500)
        #expect(fusion.graceMilliseconds == 0 && fusion.deadlineMilliseconds == 300_000)
        #expect(fusion.neutralLabels && fusion.shuffleLabels && fusion.panelSpillMargin == 8)
        #expect(fusion.prices["openrouter/openai/gpt-5"] == ModelPrice(inputPerMillion: 1.25, outputPerMillion: 10))
        #expect(fusion.prices.price(of: "openrouter/meta/llama")?.outputPerMillion == 15)
        let web = try #require(config.web)
        #expect(web.search == SearchBackend(kind: .searxng, baseURL: "http://127.0.0.1:8888"))
        #expect(web.maxResults == 5 && web.maxRedirects == 5 && web.maxFetchBytes == 2_097_152 && web.maxCallsPerTurn == 4)
        #expect(web.addressPolicy.allow.map(\.description) == ["10.20.0.0/16", "127.0.0.1:8443"])
        #expect(!web.simulated)
    }

    @Test(arguments: [
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a, b], min_answers: 3}}}", "fusion.presets.q.min_answers"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a], grace_ms: -5}}}", "fusion.presets.q.grace_ms"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, deadline_ms: 10}", "fusion.deadline_ms"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, grace_ms: 9999999}", "fusion.grace_ms"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, neutral_labels: maybe}", "fusion.neutral_labels"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, panel_spill_margin: -1}", "fusion.panel_spill_margin"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, prices: {a: {input: 1}}}", "fusion.prices.a.output"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, prices: {a: {input: -1, output: 1}}}", "fusion.prices.a.input"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, prices: {a: {input: .inf, output: 1}}}", "fusion.prices.a.input"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, prices: {a: {input: 1, output: 1, cached: 0}}}", "fusion.prices.a"),
        // A host name where an address to listen on goes (review 121 #7: exit 1 at bind time).
        ("server: {host: localhost}", "server.host"),
        ("server: {host: '10.0.0.300'}", "server.host"),
        ("server: {host: \"127.0.0.1\\0x\"}", "server.host"),
        // YAML 1.1's other spellings of numbers (review 121 #4: `1:30` was $90).
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, prices: {a: {input: '1:30', output: 1}}}", "fusion.prices.a.input"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, prices: {a: {input: 1:30, output: 1}}}", "fusion.prices.a.input"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, prices: {a: {input: 0x10, output: 1}}}", "fusion.prices.a.input"),
        ("fusion: {outer_model: m, presets: {q: {analysis_models: [a]}}, prices: {a: {input: 1_0, output: 1}}}", "fusion.prices.a.input"),
    ])
    func badLatencyAndPriceSettingsAreErrorsNamingTheKey(yaml: String, key: String) {
        do {
            _ = try GatewayConfig.parse(yaml: yaml)
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect("\(error)".contains(key), "\(error)")
        }
    }

    /// An origin or host name that can never equal what a browser or client sends would leave a
    /// frontend blocked (or every request refused) with no hint why: the config says so at start.
    @Test(arguments: [
        ("server: {cors: {allow_origins: ['https://app.example.com/']}}", "allow_origins[0]", "trailing slash"),
        ("server: {cors: {allow_origins: ['*', 'app.example.com']}}", "allow_origins[1]", "scheme://host"),
        ("server: {cors: {allow_origins: ['https://App.Example.com']}}", "allow_origins[0]", "lower case"),
        ("server: {cors: {allow_origins: ['https://app.example.com:443']}}", "allow_origins[0]", "default port"),
        ("server: {cors: {allow_origins: ['http://localhost:80']}}", "allow_origins[0]", "default port"),
        ("server: {cors: {allow_origins: ['https://app.example.com/chat']}}", "allow_origins[0]", "without a path"),
        ("server: {cors: {allow_origins: ['https://a.example.com https://b.example.com']}}", "allow_origins[0]", "spaces"),
        ("server: {cors: {allow_origins: ['null']}}", "allow_origins[0]", "sandboxed"),
        ("server: {allowed_hosts: ['gateway.example.com:8080']}", "allowed_hosts[0]", "port"),
        ("server: {allowed_hosts: ['https://gateway.example.com']}", "allowed_hosts[0]", "scheme"),
        ("server: {allowed_hosts: ['[::1]']}", "allowed_hosts[0]", "brackets"),
        ("server: {allowed_hosts: ['']}", "allowed_hosts[0]", "host name"),
    ])
    func originsAndHostsThatCanNeverMatchAreErrors(yaml: String, key: String, reason: String) {
        do {
            _ = try GatewayConfig.parse(yaml: yaml)
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect("\(error)".contains(key) && "\(error)".contains(reason), "\(error)")
        }
    }

    @Test func originsAndHostsAsClientsSendThemLoad() throws {
        let config = try GatewayConfig.parse(yaml: """
            server:
              cors: {allow_origins: ['*', 'https://app.example.com', 'http://localhost:5173', 'http://[::1]:3000', 'app://desktop']}
              allowed_hosts: [gateway.example.com, GATEWAY.internal, 10.0.0.5, '::1', my_host]
            """)
        #expect(config.server.corsAllowOrigins.count == 5 && config.server.allowedHosts.count == 5)
    }

    @Test func theOutputLimitFieldAndTheInnerCallsLimitAreChecked() throws {
        let yaml = "providers: {l: {kind: openai, base_url: 'http://127.0.0.1:1/v1', max_tokens_field: max_completion_tokens}}\n"
            + "fusion: {outer_model: l/m, presets: {quality: {analysis_models: [l/m]}}, max_completion_tokens: 64, judge_timeout_ms: 900,"
            + " panel_spill_margin: 0}"
        let config = try GatewayConfig.parse(yaml: yaml)
        #expect(config.providers["l"]?.maxTokensField == .maxCompletionTokens)
        #expect(config.providers["l"]?.streamUsage == true)
        // By default OpenAI's own API gets the field its reasoning models take (review 74A #2).
        let hosted = try GatewayConfig.parse(yaml: "providers: {o: {kind: openai, base_url: 'https://API.openai.com/v1'}, "
                                              + "z: {kind: openai, base_url: 'https://me.openai.azure.com/openai/v1'}, "
                                              + "r: {kind: openai, base_url: 'https://openrouter.ai/api/v1'}, "
                                              + "f: {kind: openai, base_url: 'https://api.openai.com/v1', max_tokens_field: max_tokens}}\n")
        #expect(hosted.providers["o"]?.maxTokensField == .maxCompletionTokens && hosted.providers["z"]?.maxTokensField == .maxCompletionTokens)
        #expect(hosted.providers["r"]?.maxTokensField == .maxTokens && hosted.providers["f"]?.maxTokensField == .maxTokens)
        #expect(try GatewayConfig.parse(yaml: "server: {min_drain_bytes_per_second: 1024}\n").server.limits.minDrainBytesPerSecond == 1024)
        let strict = try GatewayConfig.parse(yaml: "providers: {mistral: {kind: openai, base_url: 'https://api.mistral.ai/v1', stream_usage: false}}\n")
        #expect(strict.providers["mistral"]?.streamUsage == false)
        let router = ModelRouter(config: strict, environment: [:])
        #expect(try router.route("mistral/mistral-small-latest").endpoint.asksForStreamUsage == false)
        #expect(config.fusion?.defaultMaxTokens == 64 && config.fusion?.judgeTimeoutMilliseconds == 900)
        #expect(config.fusion?.panelSpillMargin == 0 && FusionSettings.simulated.panelSpillMargin == 8)
        for bad in ["providers: {l: {kind: openai, base_url: 'http://h/v1', max_tokens_field: tokens}}",
                    "providers: {a: {kind: anthropic, max_tokens_field: max_tokens}}",
                    "providers: {a: {kind: anthropic, stream_usage: false}}",
                    "server: {min_drain_bytes_per_second: 0}", "server: {min_drain_bytes_per_second: -5}",
                    "server: {min_drain_bytes_per_second: 1e40}", "server: {min_drain_bytes_per_second: fast}",
                    "providers: {l: {kind: openai, base_url: 'http://h/v1', stream_usage: 1}}",
                    "fusion: {outer_model: l/m, presets: {q: {analysis_models: [l/m]}}, max_completion_tokens: 0}"] {
            #expect(throws: ConfigError.self, "\(bad)") { try GatewayConfig.parse(yaml: bad) }
        }
    }

    /// A credential header (Azure OpenAI's `api-key`) comes from the environment, never the file,
    /// and is a secret like an API key: sent, trimmed, and redacted (review 42: it could only be
    /// written in the file, and echoed back it reached the client and the record).
    @Test func secretHeadersComeFromTheEnvironmentAndAreRedacted() throws {
        let yaml = """
            providers:
              azure: {kind: openai, base_url: 'https://x.openai.azure.com/openai/v1', headers: {X-Title: t}, headers_env: {api-key: AZURE_KEY}}
              unset: {kind: openai, base_url: 'http://127.0.0.1:1/v1', headers_env: {api-key: NOT_SET}}
            """
        let config = try GatewayConfig.parse(yaml: yaml)
        #expect(config.providers["azure"]?.headerEnvironmentVariables == ["api-key": "AZURE_KEY"])
        let router = ModelRouter(config: config, environment: ["AZURE_KEY": "azure-secret-0123456789\n"])
        #expect(try router.route("azure/gpt").endpoint.headers == ["X-Title": "t", "api-key": "azure-secret-0123456789"])
        #expect(router.secrets.contains("azure-secret-0123456789"))
        #expect(router.providersMissingHeaders.map(\.variable) == ["NOT_SET"])
        #expect(try router.route("unset/m").endpoint.headers["api-key"] == nil)
        for bad in ["providers: {a: {base_url: 'http://h/v1', headers: {api-key: x}, headers_env: {API-Key: K}}}",
                    "providers: {a: {base_url: 'http://h/v1', headers_env: {api-key: ''}}}",
                    "providers: {a: {base_url: 'http://h/v1', headers_env: [K]}}"] {
            #expect(throws: ConfigError.self, "\(bad)") { try GatewayConfig.parse(yaml: bad) }
        }
    }

    /// OpenRouter gets its `reasoning` object, any other OpenAI-compatible server OpenAI's
    /// `reasoning_effort`, unless the config says otherwise.
    @Test func theReasoningFieldFollowsTheBaseURLUnlessSet() throws {
        let yaml = """
            providers:
              or: {kind: openai, base_url: 'https://openrouter.ai/api/v1'}
              oa: {kind: openai, base_url: 'https://api.openai.com/v1'}
              set: {kind: openai, base_url: 'http://127.0.0.1:1/v1', reasoning_field: reasoning}
            """
        let config = try GatewayConfig.parse(yaml: yaml)
        #expect(config.providers["set"]?.reasoningField == .object && config.providers["oa"]?.reasoningField == nil)
        let router = ModelRouter(config: config, environment: [:])
        #expect(try router.route("or/m").endpoint.reasoningField == .object)
        #expect(try router.route("oa/m").endpoint.reasoningField == .effort)
        #expect(try router.route("set/m").endpoint.reasoningField == .object)
        for (url, field) in [("https://openrouter.ai/api/v1", ProviderEndpoint.ReasoningField.object), ("http://EU.OpenRouter.ai:443/v1", .object),
                             ("https://openrouter.ai.evil.example/v1", .effort), ("http://127.0.0.1:8080/v1", .effort), ("", .effort)] {
            #expect(ProviderEndpoint.ReasoningField.standard(forBaseURL: url) == field, "\(url)")
        }
        for bad in ["providers: {l: {kind: openai, base_url: 'http://h/v1', reasoning_field: effort}}",
                    "providers: {g: {kind: gemini, reasoning_field: reasoning}}"] {
            #expect(throws: ConfigError.self, "\(bad)") { try GatewayConfig.parse(yaml: bad) }
        }
    }

    /// With simulated models on, a partial fusion section tunes the simulated setup rather than
    /// replacing it (review 17 #1); a bad value is named at once.
    @Test func aPartialFusionSectionKeepsTheSimulatedSetup() throws {
        let fusion = try #require(try GatewayConfig.parse(yaml: "simulated_models: true\nfusion: {member_timeout_ms: 5000}").fusion)
        #expect(fusion.memberTimeoutMilliseconds == 5000 && fusion.outerModel == FusionSettings.simulated.outerModel)
        #expect(fusion.presets == FusionSettings.simulated.presets && fusion.prices == FusionSettings.simulated.prices)
        let own = try #require(try GatewayConfig.parse(yaml: "simulated_models: true\nfusion: {presets: {solo: {analysis_models: [sim/expert-1]}}}").fusion)
        #expect(Array(own.presets.keys) == ["solo"] && own.defaultPreset == "solo")
        #expect(throws: ConfigError.self) { try GatewayConfig.parse(yaml: "simulated_models: true\nfusion: {grace_ms: 600001}") }
    }

    @Test func webSectionChoosesAHostedBackendByEnvironmentKey() throws {
        let config = try GatewayConfig.parse(yaml: "web: {search: {backend: brave, api_key_env: BRAVE_KEY}, fetch: {enabled: false}}")
        let web = try #require(config.web)
        #expect(web.search?.kind == .brave && web.search?.baseURL == "https://api.search.brave.com/res/v1")
        #expect(web.searchAPIKeyEnvironmentVariable == "BRAVE_KEY" && web.search?.apiKey == nil)
        #expect(!web.fetch)
        #expect(try GatewayConfig.parse(yaml: "simulated_models: false").web == nil, "no section: no tools")
        #expect(GatewayConfig.embeddedDefault.web?.simulated == true)
        let simulated = try #require(GatewayConfig.embeddedDefault.web?.resolvingSimulatedWeb(port: 4321, key: "k"))
        #expect(simulated.search?.baseURL == "http://simulated-web.invalid")
        #expect(simulated.access(for: "http://simulated-web.invalid/web/page/1").connectTo == ["simulated-web.invalid:80:127.0.0.1:4321"])
        #expect(simulated.access(for: "http://simulated-web.invalid/x").headers.first?.1 == "Bearer k")
        #expect(simulated.access(for: "http://elsewhere.example/").headers.isEmpty, "the key goes to the simulated web only")
        #expect(simulated.addressPolicy.refusal(address: [127, 0, 0, 1], port: 4321) == nil)
        #expect(simulated.addressPolicy.refusal(address: [127, 0, 0, 1], port: 4322) != nil)
    }

    @Test func nativeProviderKindsHaveTheirAPIsAndDefaultBaseURLs() throws {
        let config = try GatewayConfig.parse(yaml: """
            providers:
              claude: {kind: anthropic, api_key_env: ANTHROPIC_API_KEY, headers: {anthropic-version: '2026-10-21'}}
              google: {kind: gemini, api_key_env: GEMINI_API_KEY}
              vertex-proxy: {kind: gemini, base_url: 'https://proxy.example/v1/'}
            """)
        #expect(config.providers["claude"]?.baseURL == "https://api.anthropic.com/v1")
        #expect(config.providers["claude"]?.headers == ["anthropic-version": "2026-10-21"])
        #expect(config.providers["google"]?.baseURL == "https://generativelanguage.googleapis.com/v1beta")
        #expect(config.providers["vertex-proxy"]?.baseURL == "https://proxy.example/v1")
        #expect(config.providers["claude"]?.implementation.wireFormat == .anthropicMessages)
        #expect(config.providers["google"]?.implementation.wireFormat == .gemini)
        let router = ModelRouter(config: config, environment: ["ANTHROPIC_API_KEY": "sk-ant-k", "GEMINI_API_KEY": "AIza-k"])
        let route = try router.route("claude/claude-sonnet-4-5")
        #expect(route.provider.wireFormat == .anthropicMessages && route.endpoint.apiKey == "sk-ant-k")
        #expect(route.endpoint.headers["anthropic-version"] == "2026-10-21")
        #expect(try router.route("google/gemini-2.5-flash").provider.wireFormat == .gemini)
        let example = try GatewayConfig.load(path: Self.example)
        #expect(example.providers["anthropic"]?.kind == .anthropic && example.providers["gemini"]?.kind == .gemini)
    }

    @Test func fusionDefaultsToSimulatedOnlyWithSimulatedModels() throws {
        #expect(GatewayConfig.embeddedDefault.fusion == .simulated)
        // Its price table serves budgets and spend too, as a file's single table does.
        #expect(!GatewayConfig.embeddedDefault.prices.isEmpty && GatewayConfig.embeddedDefault.prices == FusionSettings.simulated.prices)
        #expect(try GatewayConfig.parse(yaml: "simulated_models: true").prices == FusionSettings.simulated.prices)
        #expect(try GatewayConfig.parse(yaml: "simulated_models: true").fusion == .simulated)
        #expect(try GatewayConfig.parse(yaml: "simulated_models: false").fusion == nil)
        // A table given at the top joins the simulated models' own, for the estimate and budgets
        // alike (review 22 F10: the simulated table shadowed it in the estimate); one given under
        // `fusion:` is the estimate's alone.
        let providers = "providers: {fake: {base_url: 'http://h/v1'}, other: {base_url: 'http://h/v1'}}\n"
        let top = try GatewayConfig.parse(yaml: "simulated_models: true\n" + providers + "prices: {fake/*: {input: 1, output: 2}}")
        #expect(top.fusion?.prices["fake/*"] == ModelPrice(inputPerMillion: 1, outputPerMillion: 2) && top.prices == top.fusion?.prices)
        #expect(top.prices.count == FusionSettings.simulated.prices.count + 1)
        let both = try GatewayConfig.parse(yaml: "simulated_models: true\n" + providers + "prices: {fake/*: {input: 1, output: 2}}\nfusion: {prices: {other/*: {input: 3, output: 4}}}")
        // A model whose name holds a colon is priced by its whole name (review 63 #1: refused).
        let tagged = try GatewayConfig.parse(yaml: "providers: {ollama: {base_url: 'http://h/v1', models: ['llama3:8b', 'm:free']}}\n"
                                             + "prices: {'ollama/llama3:8b': {input: 1, output: 2}, 'ollama/m:free': {input: 0, output: 0}}")
        #expect(tagged.prices.count == 2)
        #expect(both.fusion?.prices.keys.sorted() == ["other/*"] && both.prices.keys.sorted() == ["fake/*"])
    }

    /// A key YAML would read as a boolean or a number is taken when quoted (review 121 #7).
    @Test func aQuotedKeyThatLooksLikeANumberIsAKey() throws {
        let config = try GatewayConfig.parse(yaml: "server: {api_keys: ['true', \"12345678901234\", sk-plain-0123456789]}")
        #expect(config.server.apiKeys == ["true", "12345678901234", "sk-plain-0123456789"])
    }

    @Test func embeddedDefaultNeedsNoKeys() {
        let config = GatewayConfig.embeddedDefault
        #expect(config.simulatedModels)
        #expect(config.providers.isEmpty)
        #expect(config.server.host == "127.0.0.1")
    }

    @Test(arguments: [
        ("servr: {}", "unknown key 'servr'"),
        ("server: {port: 99999}", "server.port"),
        ("server: {port: eighty}", "server.port"),
        // YAML 1.1's other integer forms: octal, base 60, underscores, hex, binary (review 83B #4).
        ("server: {port: 0120450}", "server.port must be an integer in 0...65535, in decimal digits"),
        ("server: {header_timeout_ms: '1:00'}", "server.header_timeout_ms"),
        ("server: {header_timeout_ms: 1:00}", "server.header_timeout_ms"),
        ("server: {port: 4_1257}", "server.port"),
        ("server: {port: 0x10}", "server.port"),
        ("server: {port: 0b1010}", "server.port"),
        ("server: {port: +80}", "server.port"),
        ("providers: {p: {base_url: 'ftp://x'}}", "base_url must start with"),
        ("providers: {p: {base_url: 'http:///v1'}}", "providers.p.base_url must be a URL with a host name"),
        ("providers: {'p q': {base_url: 'http://h/v1'}}", "providers: entry 1's name is not a provider name: 1 to 64 letters"),
        ("providers: {\"p\\nX\": {base_url: 'http://h/v1'}}", "is not a provider name: 1 to 64 letters"),
        ("providers: {p: {base_url: 'http://h/v1', models: []}}", "providers.p.models is empty"),
        ("providers: {p: {base_url: 'http://h/v1', models: [a, a]}}", "providers.p.models[1] repeats 'a'"),
        ("providers: {p: {base_url: 'http://h/v1', models: [a, '']}}", "providers.p.models[1] is empty"),
        ("providers: {p: {base_url: 'http://h/v1', api_key_env: K, headers: {Authorization: x}}}", "providers.p.headers.Authorization: Authorization carries a credential"),
        ("providers: {p: {kind: anthropic, api_key_env: K, headers_env: {X-Api-Key: V}}}", "the key named by api_key_env is sent in X-Api-Key"),
        ("store: {redis: {url: 'redis://h', key_prefix: ''}}", "key_prefix must be 1 to 64"),
        ("simulated_models: true\nfusion: {outer_model: a/b, presets: {}}", "presets is empty"),
        ("providers: {p: {base_url: 'http://'}}", "providers.p.base_url must be a URL with a host name"),
        ("providers: {p: {base_url: 'https://ex ample.com/v1'}}", "providers.p.base_url must be a URL with a host name"),
        ("providers: {p: {base_url: 'http://h/openai/v1?api-version=1'}}", "providers.p.base_url takes no query or fragment"),
        ("providers: {p: {base_url: 'http://h/v1#x'}}", "providers.p.base_url takes no query or fragment"),
        ("providers: {p: {base_url: 'http://u:pw@h/v1'}}", "providers.p.base_url takes no credentials"),
        ("providers: {p: {base_url: 'http://h:99999/v1'}}", "a port is 1 to 65535"),
        ("providers: {p: {base_url: 'http://h/v1/%'}}", "a path that is not a URL's"),
        ("providers: {p: {base_url: 'http://h/v1/{deployment}'}}", "a path that is not a URL's"),
        ("server: {api_keys: [null]}", "server.api_keys[0] is null"),
        ("server: {api_keys: [sk-one, ~]}", "server.api_keys[1] is null"),
        // A key YAML reads as a boolean or a number is a template's fault (review 121 #7).
        ("server: {api_keys: [true]}", "server.api_keys[0] is not plain text to YAML"),
        ("server: {api_keys: [sk-one-long-enough, 12345678901234]}", "server.api_keys[1] is not plain text to YAML"),
        ("server: {api_keys: [1.5e3]}", "server.api_keys[0] is not plain text to YAML"),
        ("server: {api_keys: [sk-one-long-enough, 2024-01-01]}", "server.api_keys[1] is not plain text to YAML"),
        ("providers:\n  p:\n    <<: {kind: openai}\n    base_url: 'http://x/v1'\n", "YAML merge keys (<<) and aliases are not supported"),
        ("server: {sk-live-0123456789abcdefghijklmnopqrstuv: 1}", "server: entry 1 is no known key"),
        // A secret pasted as a name is never printed (review 124 #3): a 32-hex key, a provider, a header.
        ("server: {port: 1, a3f09c1d2b4e5f60718293a4b5c6d7e8: 1}", "server: entry 2 is no known key"),
        ("providers: {sk-proj-AbC+dEf/GhIj0123456789: {base_url: 'http://h/v1'}}", "providers: entry 1's name is not a provider name"),
        ("providers: {p: {base_url: 'http://h/v1', headers_env: {'Bearer sk-proj-0123': V}}}", "providers.p.headers_env: entry 1's name is not a header name"),
        // …and in every message about what is under it (review 126 #1).
        ("providers: {a3f09c1d2b4e5f60718293a4b5c6d7e8: {base_url: 'ftp://x'}}", "providers.[entry 1].base_url"),
        ("prices: {sk-proj-AbCdEfGhIjKlMnOp: 1}", "prices.[entry 1] must be a mapping"),
        ("providers: {p: {base_url: 'http://h/v1', models: [a, null]}}", "providers.p.models[1] is null"),
        ("web: {search: {backend: searxng, url: 'http://:8888'}}", "web.search.url must be a URL with a host name"),
        ("server: {port: 1, api_keys: [sk-SECRET1]}\nserver: {api_keys: [sk-SECRET2]}", "invalid YAML: the mapping at line 1"),
        ("server: {api_keys: [sk-SECRET1", "invalid YAML: line"),
        ("providers: {p: {kind: bedrock, base_url: 'http://x'}}", "unknown provider kind 'bedrock' (supported: openai, anthropic, gemini)"),
        ("providers: {p: {}}", "base_url is required"),
        ("providers: {p: {base_url: 'http://x', api_key: 'sk-123'}}", "api_key_env"),
        ("providers: {sim: {base_url: 'http://x'}}", "reserved"),
        ("default_provider: ghost", "ghost"),
        ("upstream: {idle_timeout_ms: -5}", "upstream.idle_timeout_ms"),
        ("simulated_models: maybe", "simulated_models"),
        ("server: [1, 2]", "must be a mapping"),
        ("{{{", "invalid YAML"),
        ("fusion: {presets: {q: {analysis_models: [a/b]}}}", "outer_model is required"),
        ("fusion: {outer_model: a/b}", "presets is required"),
        ("fusion: {outer_model: a/b, presets: {q: {analysis_models: []}}}", "1 to 8"),
        ("fusion: {outer_model: a/b, presets: {q: {analysis_models: [a/b, c/d, a/b]}}}", "fusion.presets.q.analysis_models[2] repeats a model"),
        ("fusion: {outer_model: a/b, presets: {q: {analysis_models: [a/b]}}, default_preset: z}", "default_preset"),
        ("fusion: {outer_model: a/b, presets: {q: {analysis_models: [a/b]}}, panel_context: all}", "panel_context"),
        ("fusion: {outer_model: a/b, presets: {q: {analysis_models: [a/b], judge: c/d}}}", "unknown key 'judge'"),
        ("web: {search: {backend: google}}", "unknown search backend 'google'"),
        ("web: {search: {backend: searxng}}", "web.search.url is required"),
        ("web: {search: {backend: brave}}", "api_key_env is required"),
        ("web: {search: {backend: brave, api_key: x}}", "api_key_env"),
        ("web: {search: {url: 'ftp://x'}}", "url must start with"),
        ("web: {fetch: {allow: [localhost]}}", "'localhost' is not an address"),
        ("web: {fetch: {max_redirects: 50}}", "web.fetch.max_redirects"),
        ("web: {fetch: {enabled: false}}", "no tool left"),
        ("web: {simulated: true}", "needs simulated_models"),
        ("web: {serach: {}}", "unknown key 'serach'"),
        // A secret pasted where its variable's name goes is refused, never repeated (review 62D #1).
        ("providers: {p: {base_url: 'http://h/v1', api_key_env: 'sk-proj-SECRET0123456789'}}", "providers.p.api_key_env must name an environment variable"),
        ("providers: {p: {base_url: 'http://h/v1', headers_env: {api-key: 'SECRET=x'}}}", "providers.p.headers_env.api-key must name an environment variable"),
        ("server: {api_keys_env: 'gwk SECRET'}", "server.api_keys_env must name an environment variable"),
        ("keys: {ops: {key_env: 'gwk-SECRET-1'}}", "keys.ops.key_env must name an environment variable"),
        ("store: {redis: {url: 'redis://h', password_env: 'p@SECRET'}}", "store.redis.password_env must name an environment variable"),
        ("web: {search: {backend: brave, api_key_env: '1SECRET'}}", "web.search.api_key_env must name an environment variable"),
        // Credentials in plain headers are no secrets to the redactor (review 62D #2).
        ("providers: {p: {base_url: 'http://h/v1', headers: {Authorization: 'Bearer sk-SECRET'}}}", "providers.p.headers.Authorization: Authorization carries a credential"),
        ("providers: {p: {base_url: 'http://h/v1', headers: {api-key: SECRET}}}", "providers.p.headers.api-key: api-key carries a credential"),
        ("providers: {p: {kind: gemini, headers: {X-Goog-Api-Key: SECRET}}}", "carries a credential"),
        // Framing headers and names that are no tokens (review 62D #5).
        ("providers: {p: {base_url: 'http://h/v1', headers: {Content-Length: '5'}}}", "providers.p.headers.Content-Length: Content-Length is the gateway's to write"),
        ("providers: {p: {base_url: 'http://h/v1', headers: {Host: evil.example}}}", "Host is the gateway's to write"),
        ("providers: {p: {base_url: 'http://h/v1', headers: {'X B:c': d}}}", "providers.p.headers: entry 1's name is not a header name"),
        ("providers: {p: {base_url: 'http://h/v1', headers: {X-A: \"v\\r\\nX-Injected: 1\"}}}", "providers.p.headers.X-A holds a control character"),
        ("providers: {p: {base_url: 'http://h/v1', headers_env: {'Transfer-Encoding': K}}}", "Transfer-Encoding is the gateway's to write"),
        // A price for nothing that routes: its model stayed unpriced and budgets free (review 62D #4).
        ("providers: {fake: {base_url: 'http://h/v1', models: [ok]}}\nprices: {faek/ok: {input: 1, output: 1}}", "prices.faek/ok: no provider 'faek' is configured"),
        ("providers: {fake: {base_url: 'http://h/v1', models: [ok]}}\nprices: {fake/okk: {input: 1, output: 1}}", "prices.fake/okk: provider 'fake' serves only ok"),
        ("providers: {fake: {base_url: 'http://h/v1'}}\nprices: {gpt-4o: {input: 1, output: 1}}", "prices.gpt-4o names no provider"),
        ("providers: {fake: {base_url: 'http://h/v1'}}\nprices: {sim/expert-1: {input: 1, output: 1}}", "no provider 'sim' is configured"),
        ("providers: {fake: {base_url: 'http://h/v1'}}\nfusion: {outer_model: fake/a, presets: {q: {analysis_models: [fake/b]}}, prices: {fak/a: {input: 1, output: 1}}}",
         "fusion.prices.fak/a: no provider 'fak' is configured"),
        // The simulated models' provider is there only when they are (review 62D #6).
        ("providers: {p: {base_url: 'http://h/v1'}}\ndefault_provider: sim", "set simulated_models: true"),
    ])
    func badConfigsAreRejectedWithTheirPath(yaml: String, mention: String) {
        do {
            _ = try GatewayConfig.parse(yaml: yaml, source: "test.yaml")
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect("\(error)".contains(mention), "\(error)")
            #expect(!"\(error)".contains("SECRET"), "no line of the file is quoted: \(error)")
        }
    }

    /// Valid URLs pass as written, their scheme in lower case and without trailing slashes.
    @Test func baseURLsAreNormalized() throws {
        let config = try GatewayConfig.parse(yaml: """
            providers:
              a: {base_url: 'HTTP://h:8080/v1//'}
              b: {base_url: 'http://[::1]:8080/v1/'}
              c: {base_url: 'https://h/openai/deployments/my%20model'}
            """)
        #expect(config.providers["a"]?.baseURL == "http://h:8080/v1")
        #expect(config.providers["b"]?.baseURL == "http://[::1]:8080/v1")
        #expect(config.providers["c"]?.baseURL == "https://h/openai/deployments/my%20model")
    }

    /// A config from a pipe (`--config <(render)`, `/dev/stdin`) is read; a huge file is refused
    /// (review 52B #5: every non-regular file was "You don't have permission").
    @Test func aConfigIsReadFromAPipeAndBounded() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        let yaml = Array("server: {port: 4321}\n".utf8)
        #expect(write(ends[1], yaml, yaml.count) == yaml.count)
        close(ends[1])
        defer { close(ends[0]) }
        #expect(try GatewayConfig.load(path: "/dev/fd/\(ends[0])").server.port == 4321)
        let huge = FileManager.default.temporaryDirectory.appendingPathComponent("huge-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: huge) }
        #expect(FileManager.default.createFile(atPath: huge, contents: Data(repeating: 0x23, count: (4 << 20) + 1)))
        #expect { try GatewayConfig.load(path: huge) } throws: { "\($0)".contains("larger than 4 MiB") }
        #expect { try GatewayConfig.load(path: "/no/such/config.yaml") } throws: { "\($0)".contains("No such file or directory") }
        // A UTF-8 byte-order mark (Windows editors) is not content (review 53 #4).
        let bom = FileManager.default.temporaryDirectory.appendingPathComponent("bom-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: bom) }
        #expect(FileManager.default.createFile(atPath: bom, contents: Data([0xEF, 0xBB, 0xBF] + Array("server:\n  port: 4322\n".utf8))))
        #expect(try GatewayConfig.load(path: bom).server.port == 4322)
        #expect { try GatewayConfig.load(path: "/tmp") } throws: { "\($0)".contains("it is a directory") }
    }
}

@Suite struct ModelRouterTests {
    func router(defaultProvider: String? = nil, environment: [String: String] = ["OR_KEY": "sk-or-secret"]) throws -> ModelRouter {
        var yaml = """
            providers:
              openrouter: {base_url: 'https://openrouter.ai/api/v1', api_key_env: OR_KEY}
              local: {base_url: 'http://127.0.0.1:11434/v1', models: [llama3]}
            """
        if let defaultProvider { yaml += "\ndefault_provider: \(defaultProvider)" }
        return ModelRouter(config: try GatewayConfig.parse(yaml: yaml), environment: environment)
    }

    @Test func routesByFirstSegment() throws {
        let route = try router().route("openrouter/anthropic/claude-opus-4.5")
        #expect(route.endpoint.name == "openrouter")
        #expect(route.upstreamModel == "anthropic/claude-opus-4.5")
        #expect(route.endpoint.apiKey == "sk-or-secret")
        #expect(route.endpoint.baseURL == "https://openrouter.ai/api/v1")
        #expect(route.provider.wireFormat == .openAIChat)
        #expect(try router().route("local/llama3").endpoint.apiKey == nil)
    }

    @Test func defaultProviderTakesBareNames() throws {
        let route = try router(defaultProvider: "openrouter").route("openai/gpt-4o")
        #expect(route.endpoint.name == "openrouter")
        #expect(route.upstreamModel == "openai/gpt-4o")
    }

    @Test(arguments: ["gpt-4o", "nope/x", "local/mistral", "openrouter/"])
    func unknownModelsAreNamed(model: String) throws {
        let router = try router()
        do {
            _ = try router.route(model)
            Issue.record("routed \(model)")
        } catch {
            #expect(error.status == 404)
            #expect(error.message.contains(model))
        }
    }

    @Test func missingKeyNamesTheVariableNotTheKey() throws {
        let router = try router(environment: [:])
        #expect(router.providersMissingKeys.map(\.variable) == ["OR_KEY"])
        do {
            _ = try router.route("openrouter/x")
            Issue.record("routed without a key")
        } catch {
            #expect(error.code == "provider_key_missing")
            #expect(!error.message.contains("OR_KEY"), "the variable is the operator's: \(error.message)")
        }
        // A blank key is no key (review 21 F6: sent as `Bearer    `); white space around one is dropped.
        for blank in ["", "   ", "\n", "\t \r\n"] {
            #expect(try self.router(environment: ["OR_KEY": blank]).providersMissingKeys.map(\.variable) == ["OR_KEY"], "\(blank.debugDescription)")
        }
        #expect(try self.router(environment: ["OR_KEY": " sk-or-secret\n"]).secrets == ["sk-or-secret"])
    }
}
