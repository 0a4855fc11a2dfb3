/// The UTC day and month a moment falls in, for spend budgets: an id that names the period
/// (`20261201`, `202612`, used in counter names) and when it ends. Pure integer calendar
/// arithmetic (the proleptic Gregorian calendar, days counted from 1970-01-01).
public struct BudgetPeriods: Sendable, Equatable {
    public struct Period: Sendable, Equatable {
        public var id: String
        public var endMicros: Int64
        public init(id: String, endMicros: Int64) {
            self.id = id
            self.endMicros = endMicros
        }
    }

    public var day: Period
    public var month: Period

    static let microsPerDay: Int64 = 86_400_000_000

    /// `micros` since the epoch, clamped to years 1970–9999.
    public init(micros: Int64) {
        let clamped = min(max(micros, 0), 253_402_300_799_000_000)
        let days = clamped / Self.microsPerDay
        let (year, month, day) = Self.civil(days: days)
        self.day = Period(id: Self.digits(year, 4) + Self.digits(month, 2) + Self.digits(day, 2),
                          endMicros: (days + 1) * Self.microsPerDay)
        let nextMonth = month == 12 ? (year + 1, 1) : (year, month + 1)
        self.month = Period(id: Self.digits(year, 4) + Self.digits(month, 2),
                            endMicros: Self.days(year: nextMonth.0, month: nextMonth.1, day: 1) * Self.microsPerDay)
    }

    /// Year, month (1–12), day (1–31) of a day count since 1970-01-01 (days ≥ 0).
    static func civil(days: Int64) -> (Int64, Int64, Int64) {
        let shifted = days + 719_468  // days since 0000-03-01
        let era = shifted / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153  // March = 0
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Days since 1970-01-01 of a date (the inverse of `civil`).
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let adjustedYear = month <= 2 ? year - 1 : year
        let era = adjustedYear / 400
        let yearOfEra = adjustedYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}

extension BudgetPeriods {
    /// `value` with leading zeros to `width` digits.
    static func digits(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }
}
