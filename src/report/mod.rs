//! Reports: plain-data job and error reports, and their mailing (lettre).
