internal import CYaml

/// Where a config first uses an alias (`*name`), found with libyaml's own parser (the one Yams
/// composes with) before anything is composed. The config refuses aliases: an alias used as a
/// key is hashed fully expanded by the composer's duplicate-key check, and an alias of an alias
/// of a list walked by the config's readers, so a 400-byte file of nested anchors ran for half an
/// hour with nothing said (review 121 #1). A config never needs one (merge keys are refused too).
enum YAMLAliases {
    /// The 1-based line of the first alias, or nil (none, or a syntax error the composer reports).
    static func firstAliasLine(in yaml: String) -> Int? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(yaml.utf8)
        return bytes.withUnsafeBufferPointer { buffer -> Int? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var event = yaml_event_t()
            while yaml_parser_parse(&parser, &event) == 1 {
                let type = event.type
                let line = Int(event.start_mark.line) + 1
                yaml_event_delete(&event)
                if type == YAML_ALIAS_EVENT { return line }
                if type == YAML_STREAM_END_EVENT { return nil }
            }
            return nil
        }
    }
}
