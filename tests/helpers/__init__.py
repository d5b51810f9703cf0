"""What several tests share: corpora with known answers, packages and runs to review, record comparison."""
