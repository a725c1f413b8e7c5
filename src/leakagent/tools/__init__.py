"""What a person runs: the launcher, the CI gate, the report viewer (text, HTML), the targets doc.
"""
